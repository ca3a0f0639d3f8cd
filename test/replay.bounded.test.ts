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

const BUDGET = 64 * 1024;
/** Metric batches of this many points are ~150 KB: each must be a batch of its own. */
const BIG_BATCH_POINTS = 2000;

/** An attacker with the table owner's rights (out of the application's role): the immutability triggers off, history edited, triggers back on. */
async function tamper(pd: Pedigree, position: number, setData: string): Promise<void> {
  await pd.database.db.transaction(async (tx) => {
    await tx.query('SET LOCAL ROLE NONE');
    await tx.query('ALTER TABLE events DISABLE TRIGGER USER');
    await tx.query(`UPDATE events SET data = ${setData} WHERE position = $1`, [position]);
    await tx.query('ALTER TABLE events ENABLE TRIGGER USER');
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
        await pd.tracker.addNote(runId, `batch ${b} logged`);
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
      const [stored] = await pd.database.db.query<{ n: number }>('SELECT count(*)::int8 AS n FROM metric_points');
      expect(total.points).toBe(stored!.n);
      // The log is many budgets long, so it took many batches; each stayed within the budget, both as
      // estimated before reading and as the canonical JSON actually hashed — except an event larger than
      // the budget, which is a batch of its own.
      expect(batches.reduce((s, b) => s + b.batch.jsonBytes, 0)).toBeGreaterThan(10 * BUDGET);
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

    // Last: it spoils the store.
    it('refuses to rebuild from an altered metric value, naming the event; --force rebuilds and reports it', async () => {
      const [target] = await pd.database.db.query<{ position: number; stream_version: number }>(
        `SELECT position, stream_version FROM events WHERE stream_id = $1 AND type = 'MetricsLogged' ORDER BY position LIMIT 1`,
        [`run-${runId}`],
      );
      const before = await pd.lineage.metricPoints(runId, 'lr', { toStep: 0 });
      expect(before[0]).toMatchObject({ step: 0, value: 1 });
      await tamper(pd, target!.position, `jsonb_set(data, '{points,0,value}', '42')`);
      const readModels = await snapshot(pd.database.db);

      const refused = await pd.replay({ maxBatchBytes: BUDGET }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(BrokenChainError);
      expect((refused as BrokenChainError).firstBroken).toMatchObject({ position: target!.position, streamId: `run-${runId}`, streamVersion: target!.stream_version, type: 'MetricsLogged' });
      expect((refused as BrokenChainError).message).toMatch(new RegExp(`position ${target!.position}: MetricsLogged .*altered after it was written`));
      expect(await snapshot(pd.database.db)).toBe(readModels); // rolled back: nothing changed
      expect(await pd.lineage.metricPoints(runId, 'lr', { toStep: 0 })).toEqual(before);

      const forced = await pd.replay({ maxBatchBytes: BUDGET, force: true });
      expect(forced.brokenEvents).toBe(1); // one altered event, not every event after it
      expect(forced.broken![0]).toMatchObject({ position: target!.position, reason: expect.stringMatching(/does not match its hash/) });
      expect((await pd.lineage.metricPoints(runId, 'lr', { toStep: 0 }))[0]).toMatchObject({ step: 0, value: 42 });
      expect((await pd.verify()).firstBroken?.position).toBe(target!.position);
    });
  });
}
