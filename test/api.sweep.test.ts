/**
 * Every procedure of the router, attacked field by field over raw HTTP (the
 * tRPC wire format a non-TypeScript caller uses), on both stores. How we
 * tried to break it: each field of a valid input replaced in turn by NUL,
 * unpaired surrogates, 2^31, 2^53, −1, 1e308, NaN/±Infinity and BigInt
 * smuggled through superjson's meta, a 256 KB string, JSON nested 40 levels,
 * null, an array, an object; then random JSON (fast-check) as the whole
 * input. The answer is never a 5xx, and whatever is refused leaves the event
 * log as it was.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appRouter } from '@pedigree/api';
import type { Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { backends } from './support/stores.ts';

interface World {
  project: string;
  projectName: string;
  run: string;
  artifact: string;
  checkpoint: string;
}

const digest = () => `sha256:${randomUUID().replace(/-/g, '').padEnd(64, '0')}`;

/** A valid input for each procedure (subscriptions and the public health check aside). */
const INPUTS: Record<string, (w: World) => unknown> = {
  'projects.list': () => undefined,
  'projects.get': (w) => ({ project: w.projectName }),
  'projects.create': () => ({ name: `p-${randomUUID()}` }),
  'projects.ensure': (w) => ({ name: w.projectName }),
  'artifacts.register': (w) => ({ project: w.project, name: 'ds', spec: { kind: 'dataset', source: 'synthetic', params: { seed: 1 } } }),
  'artifacts.get': (w) => ({ artifactId: w.artifact }),
  'artifacts.list': (w) => ({ project: w.project }),
  'runs.create': (w) => ({ project: w.project, name: 'new', kind: 'sft', hyperparameters: { lr: 1 }, inputs: [{ artifactId: w.artifact, role: 'train-mix' }], tags: ['t'] }),
  'runs.fork': (w) => ({ fromRunId: w.run, name: 'fork', checkpointId: w.checkpoint, step: 1, hyperparameters: { lr: 2 } }),
  'runs.start': (w) => ({ runId: w.run }),
  'runs.declareHyperparameters': (w) => ({ runId: w.run, values: { lr: 1, nested: { a: [1, 2] } } }),
  'runs.changeHyperparameter': (w) => ({ runId: w.run, key: 'lr', value: 0.5, step: 1, reason: 'plateau' }),
  'runs.useInput': (w) => ({ runId: w.run, artifactId: w.artifact, role: 'eval-set', step: 3 }),
  'runs.produceOutput': (w) => ({ runId: w.run, artifactId: w.artifact, role: 'report', step: 3 }),
  'runs.logMetrics': (w) => ({ runId: w.run, points: [{ key: 'loss', step: 1, value: 1, time: 1_700_000_000_000 }] }),
  'runs.saveCheckpoint': (w) => ({ runId: w.run, step: 2, digest: digest(), manifest: { w: [2, 3] } }),
  'runs.recordEval': (w) => ({ runId: w.run, suite: 's', task: 't', score: 1, contextLength: 128, n: 10, step: 4 }),
  'runs.complete': (w) => ({ runId: w.run }),
  'runs.fail': (w) => ({ runId: w.run, error: 'boom' }),
  'runs.tag': (w) => ({ runId: w.run, tag: 'x' }),
  'runs.note': (w) => ({ runId: w.run, text: 'hi' }),
  'runs.get': (w) => ({ runId: w.run }),
  'runs.list': (w) => ({ project: w.projectName, search: 'r', tag: 't', kind: 'pretrain', limit: 5, offset: 0 }),
  'runs.hyperparameters': (w) => ({ runId: w.run }),
  'runs.lineage': (w) => ({ runId: w.run }),
  'runs.edges': (w) => ({ runId: w.run }),
  'runs.evals': (w) => ({ runId: w.run }),
  'runs.notes': (w) => ({ runId: w.run }),
  'metrics.keys': (w) => ({ runId: w.run }),
  'metrics.points': (w) => ({ runId: w.run, key: 'loss', fromStep: 0, toStep: 10, limit: 10 }),
  'metrics.buckets': (w) => ({ runId: w.run, key: 'loss', buckets: 10, fromStep: 0, toStep: 100 }),
  'metrics.chart': (w) => ({ runId: w.run, key: 'loss', buckets: 10, fromStep: 0, toStep: 100 }),
  'lineage.diff': (w) => ({ a: w.run, b: w.run }),
  'lineage.openLineage': (w) => ({ project: w.projectName }),
  'events.stream': (w) => ({ streamId: `run-${w.run}`, fromVersion: 1, limit: 10 }),
  'system.whoami': () => undefined,
  'system.ticket': () => undefined,
};
const SKIPPED = new Set(['system.health', 'runs.watch']);

/** A hostile value: its JSON, and superjson meta to attach at its path (to smuggle NaN, BigInt…). */
type Hostile = { name: string; json: unknown; meta?: string[] };
const deep = (n: number): unknown => (n === 0 ? 1 : { a: deep(n - 1) });
const HOSTILE: Hostile[] = [
  { name: 'NUL', json: 'a\u0000b' },
  { name: 'unpaired surrogate', json: 'a\ud800b' },
  { name: '2^31', json: 2 ** 31 },
  { name: '2^53', json: 2 ** 53 },
  { name: '-1', json: -1 },
  { name: '1e308', json: 1e308 },
  { name: '0.5', json: 0.5 },
  { name: 'NaN', json: 'NaN', meta: ['number'] },
  { name: 'Infinity', json: 'Infinity', meta: ['number'] },
  { name: 'BigInt', json: '123456789012345678901234567890', meta: ['bigint'] },
  { name: 'Date', json: '2026-01-01T00:00:00.000Z', meta: ['Date'] },
  { name: 'huge string', json: 'x'.repeat(1 << 18) },
  { name: 'deep JSON', json: deep(40) },
  { name: 'null', json: null },
  { name: 'array', json: [1, 'a', null] },
  { name: 'object', json: { k: 'v' } },
  { name: 'empty string', json: '' },
];

/** Every path to a leaf of a JSON value (and the value itself). */
function leafPaths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [prefix, ...entries.flatMap(([k, v]) => leafPaths(v, [...prefix, k]))];
}

function setAt(value: unknown, path: (string | number)[], to: unknown): unknown {
  if (path.length === 0) return to;
  const copy = structuredClone(value) as Record<string | number, unknown>;
  let at = copy;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  at[path.at(-1)!] = to;
  return copy;
}

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`every procedure under hostile input (${backend.name})`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    let w: World;

    beforeAll(async () => {
      pd = await backend.open();
      const { projectId } = await pd.tracker.createProject({ name: 'sweep' });
      const { artifactId } = await pd.tracker.registerArtifact({ projectId, name: 'data', spec: { kind: 'dataset', source: 'synthetic' } });
      const { runId } = await pd.tracker.createRun({ projectId, name: 'run', kind: 'pretrain', inputs: [{ artifactId, role: 'train-mix' }], start: true });
      await pd.tracker.logMetrics(runId, [{ key: 'loss', step: 0, value: 2 }]);
      const { artifactId: checkpoint } = await pd.tracker.saveCheckpoint(runId, { step: 1, digest: digest() });
      w = { project: projectId, projectName: 'sweep', run: runId, artifact: artifactId, checkpoint };
      server = await serveInProcess(pd, 'open');
    });
    afterAll(async () => {
      await server?.close();
      await backend.dispose();
    });

    // Whether anything was written: the log's last position as stored, settled or not. (lastPosition() is the last
    // *settled* one, which another database's transaction on the same server can hold back for a moment; under CI's
    // parallel test files it moved between two refusals that wrote nothing.)
    const position = async () => (await pd.database.db.query<{ p: number }>('SELECT coalesce(max(position), 0)::int8 AS p FROM events'))[0]!.p;
    const types = appRouter._def.procedures as unknown as Record<string, { _def: { type: 'query' | 'mutation' | 'subscription' } }>;

    async function send(path: string, json: unknown, meta?: Record<string, string[]>): Promise<number> {
      const payload = meta ? { json, meta: { values: meta } } : { json };
      const res =
        types[path]!._def.type === 'mutation'
          ? await fetch(`${server.url}/api/trpc/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) })
          : await fetch(`${server.url}/api/trpc/${path}?input=${encodeURIComponent(JSON.stringify(payload))}`);
      await res.arrayBuffer();
      return res.status;
    }

    it('has a valid input for every procedure', () => {
      const all = Object.keys(appRouter._def.procedures).filter((p) => !SKIPPED.has(p)).sort();
      expect(Object.keys(INPUTS).sort()).toEqual(all);
    });

    it('answers every field replaced by every hostile value with a status below 500, and a refusal changes nothing', async () => {
      const failures: string[] = [];
      let sent = 0;
      for (const [path, make] of Object.entries(INPUTS)) {
        const valid = make(w);
        for (const at of leafPaths(valid)) {
          for (const h of HOSTILE) {
            const before = await position();
            const status = await send(path, setAt(valid, at, h.json), h.meta ? { [at.length ? at.join('.') : '']: h.meta } : undefined);
            sent++;
            const where = `${path} ${at.join('.') || '(input)'} = ${h.name}`;
            if (status >= 500) failures.push(`${where}: ${status}`);
            else if (status !== 200 && (await position()) !== before) failures.push(`${where}: refused with ${status} but the log moved`);
          }
        }
      }
      expect(failures).toEqual([]);
      expect(sent).toBeGreaterThan(1000);
    });

    it('answers random JSON inputs with a status below 500', async () => {
      const paths = Object.keys(INPUTS);
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...paths), fc.jsonValue({ maxDepth: 4 }), async (path, input) => {
          const before = await position();
          const status = await send(path, input);
          expect(status, `${path} ${JSON.stringify(input).slice(0, 200)}`).toBeLessThan(500);
          if (status !== 200) expect(await position()).toBe(before);
        }),
        { numRuns: 300 },
      );
    });
  });
}
