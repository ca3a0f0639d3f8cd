/**
 * How we tried to break validation: fast-check generates bad input of every
 * shape we could think of (negative, fractional, huge and non-numeric steps;
 * NaN/±Infinity, strings, null and objects as values; empty, overlong,
 * newline-, NUL- and lone-surrogate keys and names; data-mix weights that miss
 * 1; hyperparameters holding non-finite numbers or unstorable strings). Every
 * such call must be refused with a typed error and leave the store
 * byte-for-byte unchanged. Valid batches, generated the same way, must be
 * accepted and summarised exactly.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LedgerError } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { pgliteBackend } from './support/stores.ts';
import { snapshot } from './support/snapshot.ts';

const badStep = fc.oneof(fc.integer({ max: -1 }), fc.double({ noInteger: true, noNaN: true }), fc.constant(NaN), fc.constant(2 ** 60), fc.constant('3' as never), fc.constant(null as never));
const badValue = fc.oneof(fc.constant(NaN), fc.constant(Infinity), fc.constant(-Infinity), fc.string() as fc.Arbitrary<never>, fc.constant(null as never), fc.constant({} as never), fc.constant(undefined as never));
const badKey = fc.oneof(
  fc.constant(''),
  fc.string({ minLength: 251, maxLength: 400 }),
  fc.string().map((s) => `${s}\n`),
  fc.string().map((s) => `a\u0000${s}`),
  fc.constant('\ud800'),
  fc.constant(7 as never),
);
const goodPoint = fc.record({ key: fc.constantFrom('loss', 'lr', 'eval/acc'), step: fc.nat({ max: 1_000_000 }), value: fc.double({ noNaN: true, noDefaultInfinity: true }) });
const badPoint = fc.oneof(
  goodPoint.chain((p) => badStep.map((step) => ({ ...p, step }))),
  goodPoint.chain((p) => badValue.map((value) => ({ ...p, value }))),
  goodPoint.chain((p) => badKey.map((key) => ({ ...p, key }))),
  goodPoint.map(({ key, value }) => ({ key, value }) as never),
  fc.constant(null as never),
);
/** A batch with at least one bad point somewhere in it. */
const badBatch = fc.tuple(fc.array(goodPoint, { maxLength: 20 }), badPoint, fc.array(goodPoint, { maxLength: 20 })).map(([a, b, c]) => [...a, b, ...c]);
const badJson = fc.oneof(fc.constant(NaN), fc.constant(Infinity), fc.string().map((s) => `${s}\u0000`), fc.constant('\udc00x'), fc.constant(undefined));
const badName = fc.oneof(fc.constant(''), fc.constant('   '), fc.string({ minLength: 201, maxLength: 300 }).filter((s) => s.trim().length > 200), fc.constant('nul\u0000'));

describe('validation, property-based (PGlite)', () => {
  const backend = pgliteBackend();
  let pd: Pedigree;
  let projectId: string;
  let runId: string;
  let datasets: string[];
  beforeAll(async () => {
    pd = await backend.open();
    projectId = (await pd.tracker.createProject({ name: 'props' })).projectId;
    runId = (await pd.tracker.createRun({ projectId, name: 'target', kind: 'pretrain', start: true })).runId;
    datasets = [];
    for (let i = 0; i < 4; i++) datasets.push((await pd.tracker.registerArtifact({ projectId, name: `d${i}`, spec: { kind: 'dataset', source: 's', params: { i } } })).artifactId);
  });
  afterAll(() => backend.dispose());

  async function refusedWithoutChange(call: () => Promise<unknown>) {
    const before = await snapshot(pd.database.db);
    const err = await call().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err, 'accepted bad input').toBeInstanceOf(LedgerError);
    expect((err as Error).message.length).toBeGreaterThan(10);
    expect(await snapshot(pd.database.db)).toBe(before);
  }

  it('refuses metric batches with any bad point', async () => {
    await fc.assert(
      fc.asyncProperty(badBatch, fc.boolean(), (points, allowNonFinite) =>
        refusedWithoutChange(async () => {
          // With allowNonFinite a batch whose only fault is a non-finite value is legal: make sure another fault is present.
          const onlyNonFinite = points.every((p) => p && typeof p.key === 'string' && /^[\w.\-/:@ ]{1,250}$/.test(p.key) && Number.isSafeInteger(p.step) && p.step >= 0 && typeof p.value === 'number');
          return pd.tracker.logMetrics(runId, points, { allowNonFinite: allowNonFinite && !onlyNonFinite });
        }),
      ),
      { numRuns: 150 },
    );
  });

  it('refuses data mixes whose weights do not sum to 1, or are out of range', async () => {
    const weights = fc
      .array(fc.double({ min: -1, max: 2, noNaN: true }), { minLength: 1, maxLength: 4 })
      .filter((w) => Math.abs(w.reduce((a, b) => a + b, 0) - 1) > 1e-6 || w.some((x) => x <= 0 || x > 1));
    await fc.assert(
      fc.asyncProperty(weights, fc.string({ minLength: 1, maxLength: 20 }), (ws, name) =>
        refusedWithoutChange(() =>
          pd.tracker.registerArtifact({ projectId, name: `mix ${name}`, spec: { kind: 'datamix', components: ws.map((weight, i) => ({ artifactId: datasets[i]!, weight })) } }),
        ),
      ),
      { numRuns: 80 },
    );
  });

  it('refuses hyperparameters holding non-finite numbers or unstorable strings', async () => {
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom('lr', 'rope_base', 'mix'), fc.double()), badJson, fc.constantFrom('top', 'nested', 'array'), (good, bad, where) => {
        const hp: Record<string, unknown> = { ...good };
        if (where === 'top') hp.bad = bad;
        else if (where === 'nested') hp.schedule = { warmup: { steps: bad } };
        else hp.list = [1, bad];
        if (bad === undefined && where === 'top') hp.bad = [undefined]; // undefined alone is just "absent"
        return refusedWithoutChange(() => pd.tracker.createRun({ projectId, name: 'hp', kind: 'sft', hyperparameters: hp as never }));
      }),
      { numRuns: 80 },
    );
  });

  it('refuses bad names, kinds and ids', async () => {
    await fc.assert(
      fc.asyncProperty(badName, (name) => refusedWithoutChange(() => pd.tracker.createRun({ projectId, name, kind: 'sft' }))),
      { numRuns: 40 },
    );
    await fc.assert(
      fc.asyncProperty(fc.string(), (kind) => refusedWithoutChange(() => pd.tracker.createRun({ projectId, name: 'k', kind: kind as never }))),
      { numRuns: 40 },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.uuid()), (id) => refusedWithoutChange(() => pd.tracker.completeRun(id))),
      { numRuns: 40 },
    );
  });

  it('accepts valid batches and summarises them exactly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(goodPoint, { minLength: 1, maxLength: 200 }), async (points) => {
        const { runId: r } = await pd.tracker.createRun({ projectId, name: `ok-${randomUUID()}`, kind: 'custom', start: true });
        await pd.tracker.logMetrics(r, points);
        for (const s of await pd.lineage.metricKeys(r)) {
          const mine = points.filter((p) => p.key === s.key);
          expect(s.count).toBe(mine.length);
          // `+ 0`: -0 is stored as 0 (JSON cannot carry -0).
          expect(s.min).toBe(Math.min(...mine.map((p) => p.value)) + 0);
          expect(s.max).toBe(Math.max(...mine.map((p) => p.value)) + 0);
          const lastStep = Math.max(...mine.map((p) => p.step));
          expect(s.lastStep).toBe(lastStep);
          expect(s.last).toBe(mine.filter((p) => p.step === lastStep).at(-1)!.value + 0);
        }
      }),
      { numRuns: 40 },
    );
  });
});
