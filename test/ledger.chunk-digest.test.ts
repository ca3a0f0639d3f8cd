/**
 * A metric chunk's digest is over its bytes as stored (chunks.ts
 * columnsDigest), so SQL can recompute it; chunks written before that carry a
 * digest over their canonical JSON and must keep verifying. How it was tried:
 * NaN, ±Infinity, -0 and two keys in one batch; a store that writes
 * the old digest (exactly what the previous version wrote: the same rows, the
 * JSON digest in the manifest) read and verified by this one; one value of an
 * old chunk changed behind the store's back; a stride set wrong, or removed;
 * a batch of 4,000 keys (more rows than one INSERT's 65,534 parameters hold).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, COLUMNS_DIGEST, EventStore, jsonChunkDigest, manifestOf, type EventMetadata, type NewEvent, type Prepared } from '@pedigree/ledger';
import { lineageProjection, Tracker, type Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';

/** Writes chunks as the version before the columns digest did: the digest over canonical JSON. */
class JsonDigestStore extends EventStore {
  override prepare(events: readonly NewEvent[], metadata?: EventMetadata): Prepared[] {
    return super.prepare(events, metadata).map((p) => {
      if (!p.chunks) return p;
      const chunks = p.chunks.map((c) => ({ ...c, digest: jsonChunkDigest(c.key, c.steps, c.values, c.times) }));
      return { ...p, chunks, dataJson: canonicalJson(manifestOf(chunks)) };
    });
  }
}

const SQL_DIGEST = `'${COLUMNS_DIGEST}' || encode(sha256(int4send(octet_length(convert_to(key, 'UTF8'))) || convert_to(key, 'UTF8') || steps || vals || times), 'hex')`;

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`metric chunk digests on ${backend.name}`, () => {
    let pd: Pedigree;
    let projectId: string;
    beforeAll(async () => {
      pd = await backend.open();
      ({ projectId } = await pd.tracker.createProject({ name: 'digests' }));
    });
    afterAll(() => pd?.close());

    it('are the SHA-256 of the stored bytes, and SQL computes the same', async () => {
      const { runId } = await pd.tracker.createRun({ projectId, name: 'columns', kind: 'pretrain', start: true });
      const points = [
        { key: 'loss', step: 0, value: 2.5, time: 1 },
        { key: 'eval/acc@1', step: 0, value: NaN, time: 2 },
        { key: 'loss', step: 1, value: -0, time: 3 },
        { key: 'eval/acc@1', step: 7, value: Infinity, time: 4 },
        { key: 'loss', step: 2 ** 40, value: -1e300, time: 5 },
      ];
      await pd.tracker.logMetrics(runId, points, { allowNonFinite: true });
      const rows = await pd.database.db.query<{ key: string; digest: string; recomputed: string }>(`SELECT key, digest, ${SQL_DIGEST} AS recomputed FROM metric_chunks WHERE run_id = $1 ORDER BY idx`, [runId]);
      expect(rows.map((r) => r.key)).toEqual(['loss', 'eval/acc@1']);
      for (const r of rows) {
        expect(r.digest).toMatch(/^sha256-columns:[0-9a-f]{64}$/);
        expect(r.recomputed).toBe(r.digest);
      }
      expect((await pd.verify({ streamId: `run-${runId}` })).ok).toBe(true);
    });

    it('written over canonical JSON by the version before keep verifying, and a changed value in one is named', async () => {
      const legacy = new Tracker(new JsonDigestStore(pd.database.db, [lineageProjection]));
      const { runId } = await legacy.createRun({ projectId, name: 'json digests', kind: 'pretrain', start: true });
      await legacy.logMetrics(runId, [{ key: 'a', step: 1, value: 1 }, { key: 'b', step: 1, value: 2 }, { key: 'a', step: 2, value: 3 }]);
      await pd.tracker.logMetrics(runId, [{ key: 'a', step: 3, value: 4 }]); // the new version appends beside them
      const stream = `run-${runId}`;
      const digests = await pd.database.db.query<{ digest: string; recomputed: string }>(`SELECT digest, ${SQL_DIGEST} AS recomputed FROM metric_chunks WHERE run_id = $1 ORDER BY position, idx`, [runId]);
      expect(digests.map((d) => d.digest.slice(0, d.digest.indexOf(':') + 1))).toEqual(['sha256:', 'sha256:', COLUMNS_DIGEST]);
      expect(digests[0]!.recomputed).not.toBe(digests[0]!.digest);
      expect(await pd.verify({ streamId: stream })).toMatchObject({ ok: true });
      expect((await pd.lineage.metricPoints(runId, 'a')).map((p) => p.value)).toEqual([1, 3, 4]);

      const [old] = await pd.database.db.query<{ position: number }>(`SELECT min(position) AS position FROM metric_chunks WHERE run_id = $1`, [runId]);
      await pd.database.db.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE NONE');
        await tx.query('ALTER TABLE metric_chunks DISABLE TRIGGER USER');
        // The value only: summaries left as they were, so only the digest can tell.
        await tx.query(`UPDATE metric_chunks SET vals = overlay(vals PLACING float8send(1.5) FROM 9 FOR 8) WHERE position = $1 AND idx = 0`, [old!.position]);
        await tx.query('ALTER TABLE metric_chunks ENABLE TRIGGER USER');
      });
      expect((await pd.verify({ streamId: stream })).firstBroken).toMatchObject({ position: old!.position, reason: expect.stringMatching(/metric chunk 0 \(a\) does not match its digest/) });
    });

    it('of a batch with more keys than one INSERT takes parameters for are all stored', async () => {
      const { runId } = await pd.tracker.createRun({ projectId, name: 'many keys', kind: 'pretrain', start: true });
      const points = Array.from({ length: 4000 }, (_, i) => ({ key: `k${i}`, step: i, value: i / 7 }));
      await pd.tracker.logMetrics(runId, points);
      const [row] = await pd.database.db.query<{ chunks: number; bad: number }>(`SELECT count(*)::int AS chunks, count(*) FILTER (WHERE digest <> ${SQL_DIGEST})::int AS bad FROM metric_chunks WHERE run_id = $1`, [runId]);
      expect(row).toEqual({ chunks: 4000, bad: 0 });
      expect((await pd.lineage.metricPoints(runId, 'k3999')).map((p) => p.value)).toEqual([3999 / 7]);
      expect((await pd.verify({ streamId: `run-${runId}` })).ok).toBe(true);
    });

    it('carry a stride that verify checks against their steps (none is allowed: it only slows charts)', async () => {
      const { runId } = await pd.tracker.createRun({ projectId, name: 'strides', kind: 'pretrain', start: true });
      await pd.tracker.logMetrics(runId, [0, 5, 10, 15].map((step) => ({ key: 'every5', step, value: step })));
      const stream = `run-${runId}`;
      const setStride = (stride: number | null) =>
        pd.database.db.transaction(async (tx) => {
          await tx.query('SET LOCAL ROLE NONE');
          await tx.query('ALTER TABLE metric_chunks DISABLE TRIGGER USER');
          await tx.query('UPDATE metric_chunks SET stride = $2 WHERE run_id = $1', [runId, stride]);
          await tx.query('ALTER TABLE metric_chunks ENABLE TRIGGER USER');
        });
      expect((await pd.database.db.query<{ stride: number }>('SELECT stride FROM metric_chunks WHERE run_id = $1', [runId]))[0]!.stride).toBe(5);
      await setStride(null);
      expect((await pd.verify({ streamId: stream })).ok).toBe(true);
      expect((await pd.lineage.metricBuckets(runId, 'every5', { buckets: 3 })).map((b) => b.count)).toEqual([2, 1, 1]);
      await setStride(4);
      expect((await pd.verify({ streamId: stream })).firstBroken).toMatchObject({ reason: expect.stringMatching(/its stride is not its steps'/) });
    });
  });
}
