/**
 * Issue 13: a rebuild at any size in bounded memory, and no rebuild from a
 * broken chain. The store here is small, so the byte budget is made small
 * (64 KiB) to force many batches, an event larger than the budget included;
 * the budget is checked through the per-batch callback, never by timing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokenChainError, type ScanProgress } from '@pedigree/ledger';
import { recordSampleLineage, type Pedigree } from '@pedigree/lineage';
import { snapshot } from './support/snapshot.ts';
import { backends } from './support/stores.ts';

const BUDGET = 8 * 1024;
/** Metric batches of this many points are stored as chunks beside their events (the event row names them in ~200 bytes). */
const BIG_BATCH_POINTS = 2000;
/** Notes this long are larger than the budget: each must be a batch of its own. */
const BIG_NOTE = 9_000;

/** An attacker with the table owner's rights (out of the application's role): the immutability triggers off, history edited, triggers back on. */
async function tamper(pd: Pedigree, table: 'events' | 'metric_chunks', position: number, set: string): Promise<void> {
  await pd.database.db.transaction(async (tx) => {
    await tx.query('SET LOCAL ROLE NONE');
    await tx.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
    await tx.query(`UPDATE ${table} SET ${set} WHERE position = $1`, [position]);
    await tx.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
  });
}

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`replay in bounded batches on ${backend.name}`, () => {
    let pd: Pedigree;
    let runId: string;
    beforeAll(async () => {
      pd = await backend.open();
      const sample = await recordSampleLineage(pd, { steps: 300 });
      ({ runId } = await pd.tracker.createRun({ projectId: sample.projectId, name: 'long', kind: 'pretrain', hyperparameters: { lr: 3e-4 }, start: true }));
      for (let b = 0; b < 6; b++) {
        const points = Array.from({ length: BIG_BATCH_POINTS }, (_, i) => ({ key: i % 2 ? 'train/loss' : 'lr', step: b * BIG_BATCH_POINTS + i, value: 1 / (1 + b + i), time: 1.7e12 + i }));
        await pd.tracker.logMetrics(runId, points);
        await pd.tracker.addNote(runId, `batch ${b} logged: ${'x'.repeat(BIG_NOTE)}`);
        await pd.tracker.logMetrics(runId, [{ key: 'eval/loss', step: b, value: 2 - b / 10 }]);
      }
      await pd.tracker.completeRun(runId);
    });
    afterAll(() => backend.dispose());

    it('rebuilds exactly the inline read models, no batch over the byte budget', async () => {
      const inline = await snapshot(pd.database.db);
      const batches: ScanProgress[] = [];
      const result = await pd.replay({ maxBatchBytes: BUDGET, onBatch: (p) => batches.push(p) });
      expect(await snapshot(pd.database.db)).toBe(inline);

      const total = batches.at(-1)!;
      expect(result).toMatchObject({ events: total.events, batches: batches.length, points: total.points });
      expect(total.events).toBe(total.totalEvents);
      expect(total.storedBytes).toBe(total.totalStoredBytes);
      const [stored] = await pd.database.db.query<{ n: number }>('SELECT coalesce(sum(n), 0)::int8 AS n FROM metric_chunks');
      expect(total.points).toBe(stored!.n);
      // The log is many budgets long, so it took many batches; each stayed within the budget, both as
      // estimated before reading and as the canonical JSON actually hashed — except an event larger than
      // the budget, which is a batch of its own.
      expect(batches.reduce((s, b) => s + b.batch.jsonBytes, 0)).toBeGreaterThan(6 * BUDGET);
      expect(batches.length).toBeGreaterThan(10);
      const alone = batches.filter((b) => b.batch.events === 1 && b.batch.bytes > BUDGET);
      expect(alone.length).toBeGreaterThanOrEqual(6);
      for (const b of batches.filter((x) => x.batch.events > 1)) {
        expect(b.batch.bytes).toBeLessThanOrEqual(BUDGET);
        expect(b.batch.jsonBytes).toBeLessThanOrEqual(BUDGET);
      }
      // The same pass by count alone (the reader before issue 13) reads it all in one batch.
      const byCount = await pd.replay({ maxBatchBytes: Infinity });
      expect(byCount).toMatchObject({ events: result.events, points: result.points, batches: 1 });
      expect(await snapshot(pd.database.db)).toBe(inline);
    });

    it('verify reads in the same bounded batches and agrees', async () => {
      const batches: ScanProgress[] = [];
      const bounded = await pd.verify({ maxBatchBytes: BUDGET, onBatch: (p) => batches.push(p) });
      const whole = await pd.verify();
      expect(bounded).toMatchObject({ ok: true, checked: whole.checked, streams: whole.streams, points: whole.points });
      expect(batches.length).toBeGreaterThan(10);
      for (const b of batches.filter((x) => x.batch.events > 1)) expect(b.batch.jsonBytes).toBeLessThanOrEqual(BUDGET);
      const stream = `run-${runId}`;
      const one = await pd.verify({ streamId: stream, maxBatchBytes: BUDGET });
      expect(one).toMatchObject({ ok: true, checked: (await pd.store.readStream(stream)).length, streams: 1 });
    });

    // Last: they spoil the store.
    it('refuses to rebuild from an altered metric chunk, naming its event; --force rebuilds and reports it', async () => {
      const [target] = await pd.database.db.query<{ position: number; stream_version: number }>(
        `SELECT position, stream_version FROM events WHERE stream_id = $1 AND type = 'MetricsLogged' ORDER BY position LIMIT 1`,
        [`run-${runId}`],
      );
      const before = await pd.lineage.metricPoints(runId, 'lr', { toStep: 0 });
      expect(before[0]).toMatchObject({ step: 0, value: 1 });
      // The point's value, not the chunk's summary or digest: only recomputing the digest finds it.
      await tamper(pd, 'metric_chunks', target!.position, `vals = overlay(vals PLACING float8send(42) FROM 1 FOR 8)`);
      const readModels = await snapshot(pd.database.db);

      const named = { position: target!.position, streamId: `run-${runId}`, streamVersion: target!.stream_version, type: 'MetricsLogged' };
      expect((await pd.verify()).firstBroken).toMatchObject({ ...named, reason: expect.stringMatching(/does not match its digest/) });
      const refused = await pd.replay({ maxBatchBytes: BUDGET }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(BrokenChainError);
      expect((refused as BrokenChainError).firstBroken).toMatchObject(named);
      expect((refused as BrokenChainError).message).toMatch(new RegExp(`position ${target!.position}: MetricsLogged .*altered after it was written`));
      expect(await snapshot(pd.database.db)).toBe(readModels); // rolled back: nothing changed

      const forced = await pd.replay({ maxBatchBytes: BUDGET, force: true });
      expect(forced.brokenEvents).toBe(1);
      expect(forced.broken![0]).toMatchObject({ position: target!.position, reason: expect.stringMatching(/does not match its digest/) });
      expect((await pd.lineage.metricPoints(runId, 'lr', { toStep: 0 }))[0]).toMatchObject({ step: 0, value: 42 });
    });

    it('verify names an event one of whose chunks was deleted, or given a summary that is not its points’', async () => {
      const sample = await pd.lineage.run(runId);
      const { runId: other } = await pd.tracker.createRun({ projectId: sample.projectId, name: 'chunks', kind: 'pretrain', start: true });
      await pd.tracker.logMetrics(other, [{ key: 'a', step: 1, value: 1 }, { key: 'b', step: 1, value: 2 }]);
      await pd.tracker.logMetrics(other, [{ key: 'a', step: 2, value: 3 }]);
      const stream = `run-${other}`;
      const [first, second] = await pd.database.db.query<{ position: number }>(`SELECT position FROM events WHERE stream_id = $1 AND type = 'MetricsLogged' ORDER BY position`, [stream]);
      expect((await pd.verify({ streamId: stream })).ok).toBe(true);
      await tamper(pd, 'metric_chunks', second!.position, `max = 99`);
      expect((await pd.verify({ streamId: stream })).firstBroken).toMatchObject({ position: second!.position, reason: expect.stringMatching(/summary .* is not its points/) });
      await pd.database.db.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE NONE');
        await tx.query('ALTER TABLE metric_chunks DISABLE TRIGGER USER');
        await tx.query('DELETE FROM metric_chunks WHERE position = $1 AND idx = 1', [first!.position]);
        await tx.query('ALTER TABLE metric_chunks ENABLE TRIGGER USER');
      });
      expect((await pd.verify({ streamId: stream })).firstBroken).toMatchObject({ position: first!.position, reason: expect.stringMatching(/names 2 metric chunks, 1 are stored/) });
    });

    it('refuses to rebuild from an altered chunk manifest (the event itself)', async () => {
      const [target] = await pd.database.db.query<{ position: number }>(
        `SELECT position FROM events WHERE stream_id = $1 AND type = 'MetricsLogged' ORDER BY position DESC LIMIT 1`,
        [`run-${runId}`],
      );
      await tamper(pd, 'events', target!.position, `data = jsonb_set(data, '{chunks,0,n}', '7')`);
      const refused = await pd.replay({ maxBatchBytes: BUDGET }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(BrokenChainError);
      expect((refused as BrokenChainError).firstBroken).toMatchObject({ position: target!.position, reason: expect.stringMatching(/does not match its hash/) });
      // check: false takes the events as stored: no refusal, nothing reported (verify is what finds it).
      const unchecked = await pd.replay({ check: false });
      expect(unchecked).toMatchObject({ checked: false });
      expect(unchecked.brokenEvents).toBeUndefined();
      expect((await pd.verify()).ok).toBe(false);
    });
  });
}
