/**
 * Issue 17, item 4: events and metric chunks partitioned by HASH of the
 * project id (16 partitions, the same modulus for both), event ids kept
 * unique across partitions by event_ids (partitioned by the id itself).
 *
 * How we tried to break it: an event id reused under a project that lands in
 * another partition (a retry and a different event), a stream's next event
 * sent under another project, the same sent by two writers at once, a forged
 * second event at a version in another partition (as the owner), a chunk
 * moved to another project's partition; and we read the plans to see that a
 * project's reads open one partition.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdempotencyError, streamIds, ValidationError } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';
import { snapshot } from './support/snapshot.ts';

const PARTITIONS = 16;

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`partitions on ${backend.name}`, () => {
    let pd: Pedigree;
    /** Projects by the partition they land in: at least two different ones. */
    const projects: { id: string; partition: number; runId: string }[] = [];
    const partitionOf = async (projectId: string) => {
      const [row] = await pd.database.db.query<{ k: number }>(
        `SELECT k FROM generate_series(0, ${PARTITIONS - 1}) k WHERE satisfies_hash_partition('events'::regclass, ${PARTITIONS}, k, $1::uuid)`,
        [projectId],
      );
      return row!.k;
    };

    beforeAll(async () => {
      pd = await backend.open();
      for (let i = 0; projects.length < 3 || new Set(projects.map((p) => p.partition)).size < 2; i++) {
        const { projectId } = await pd.tracker.createProject({ name: `p${i}` });
        const { runId } = await pd.tracker.createRun({ projectId, name: `r${i}`, kind: 'pretrain' });
        await pd.tracker.logMetrics(runId, Array.from({ length: 300 }, (_, s) => ({ key: 'loss', step: s, value: 1 / (s + 1) })));
        await pd.tracker.logMetrics(runId, [{ key: 'acc', step: 0, value: 0.5 }]);
        projects.push({ id: projectId, partition: await partitionOf(projectId), runId });
      }
    });
    afterAll(() => backend.dispose());

    it('partitions events and chunks by project hash and event ids by their own hash, 16 each', async () => {
      const rows = await pd.database.db.query<{ parent: string; strategy: string; key: string; partitions: number }>(
        `SELECT c.relname AS parent, p.partstrat AS strategy, a.attname AS key,
                (SELECT count(*)::int FROM pg_inherits i WHERE i.inhparent = c.oid) AS partitions
         FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
         ORDER BY c.relname`,
      );
      expect(rows).toEqual([
        { parent: 'event_ids', strategy: 'h', key: 'event_id', partitions: PARTITIONS },
        { parent: 'events', strategy: 'h', key: 'project_id', partitions: PARTITIONS },
        { parent: 'metric_chunks', strategy: 'h', key: 'project_id', partitions: PARTITIONS },
      ]);
    });

    it("keeps a project's events and chunks together: partition k of both tables", async () => {
      for (const p of projects) {
        const where = await pd.database.db.query<{ t: string; n: number }>(
          `SELECT tableoid::regclass::text AS t, count(*)::int AS n FROM events WHERE project_id = $1 GROUP BY 1
           UNION ALL SELECT tableoid::regclass::text, count(*)::int FROM metric_chunks WHERE project_id = $1 GROUP BY 1`,
          [p.id],
        );
        expect(where.map((w) => w.t).sort()).toEqual([`events_p${p.partition}`, `metric_chunks_p${p.partition}`]);
        expect(where.every((w) => w.n > 0)).toBe(true);
      }
      const [ids] = await pd.database.db.query<{ events: number; ids: number; joined: number }>(
        `SELECT (SELECT count(*)::int FROM events) AS events, (SELECT count(*)::int FROM event_ids) AS ids,
                (SELECT count(*)::int FROM events e JOIN event_ids i USING (event_id, project_id, position)) AS joined`,
      );
      expect(ids!.ids).toBe(ids!.events);
      expect(ids!.joined).toBe(ids!.events);
    });

    it("opens one partition for a project's reads and for a run's chart", async () => {
      const p = projects[0]!;
      const plan = async (sql: string, params: unknown[]) =>
        (await pd.database.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params)).map((r) => r['QUERY PLAN']).join('\n');
      const scanned = (text: string, table: string) => new Set([...text.matchAll(new RegExp(`on ${table}_p(\\d+)`, 'g'))].map((m) => Number(m[1])));
      const events = await plan('SELECT * FROM events WHERE project_id = $1 ORDER BY position', [p.id]);
      expect([...scanned(events, 'events')]).toEqual([p.partition]);
      const chunks = await plan(
        `SELECT c.position FROM metric_series s JOIN metric_chunks c ON c.project_id = s.project_id AND c.run_id = s.run_id AND c.key = s.key
         WHERE s.run_id = $1 AND s.key = 'loss' AND s.project_id = $2`,
        [p.runId, p.id],
      );
      expect([...scanned(chunks, 'metric_chunks')]).toEqual([p.partition]);
      // …and the chart itself, exact, through the pruned queries.
      const buckets = await pd.lineage.metricBuckets(p.runId, 'loss', { buckets: 7 });
      expect(buckets.reduce((n, b) => n + b.count, 0)).toBe(300);
      expect(Math.min(...buckets.map((b) => b.min))).toBe(1 / 300);
      expect((await pd.lineage.metricPoints(p.runId, 'loss', { fromStep: 10, toStep: 12 })).map((x) => x.step)).toEqual([10, 11, 12]);
    });

    it('keeps an event id unique across partitions: a different event under another project is refused, a retry is answered', async () => {
      const [a, b] = [projects[0]!, projects.find((p) => p.partition !== projects[0]!.partition)!];
      const eventId = randomUUID();
      const first = await pd.store.append(streamIds.run(a.runId), [{ type: 'TagAdded', data: { tag: 'x' }, eventId }], { projectId: a.id, expectedVersion: 'any' });
      const before = await snapshot(pd.database.db);
      const otherRun = randomUUID();
      const reused = await pd.store
        .append(streamIds.run(otherRun), [{ type: 'RunCreated', data: { runId: otherRun, projectId: b.id, name: 'thief', kind: 'pretrain' }, eventId }], { projectId: b.id, expectedVersion: 0 })
        .catch((e: unknown) => e);
      expect(reused).toBeInstanceOf(IdempotencyError);
      expect((reused as Error).message).toMatch(/already (stored|used)/);
      expect(await snapshot(pd.database.db)).toBe(before);
      const retry = await pd.store.append(streamIds.run(a.runId), [{ type: 'TagAdded', data: { tag: 'x' }, eventId }], { projectId: a.id, expectedVersion: 'any' });
      expect(retry).toMatchObject({ duplicate: true, positions: first.positions });
      // hasEvent asks event_ids: the id is there, in its own partition, whatever the project.
      expect(await pd.store.hasEvent(eventId)).toBe(true);
      expect(await pd.store.hasEvent(eventId.toUpperCase())).toBe(true);
      expect(await pd.store.hasEvent(randomUUID())).toBe(false);
    });

    it("refuses a stream's event under another project, also when two writers race to start the stream", async () => {
      const [a, b] = [projects[0]!, projects.find((p) => p.partition !== projects[0]!.partition)!];
      const before = await snapshot(pd.database.db);
      const moved = await pd.store.append(streamIds.run(a.runId), [{ type: 'TagAdded', data: { tag: 'moved' } }], { projectId: b.id, expectedVersion: 'any' }).catch((e: unknown) => e);
      expect(moved).toBeInstanceOf(ValidationError);
      expect((moved as Error).message).toMatch(/belongs to another project/);
      expect(await snapshot(pd.database.db)).toBe(before);

      for (let round = 0; round < 5; round++) {
        const runId = randomUUID();
        const stream = streamIds.run(runId);
        const results = await Promise.allSettled(
          [a, b].map((p) => pd.store.append(stream, [{ type: 'RunCreated', data: { runId, projectId: p.id, name: `race ${round}`, kind: 'pretrain' } }], { projectId: p.id, expectedVersion: 'any' })),
        );
        expect(results.filter((r) => r.status === 'fulfilled'), JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok')))).toHaveLength(1);
        const rows = await pd.database.db.query<{ project_id: string; v: number }>('SELECT project_id, stream_version AS v FROM events WHERE stream_id = $1', [stream]);
        expect(rows).toHaveLength(1);
      }
    });

    it('verify names a second event at a version forged into another partition, and a chunk moved to another project', async () => {
      const [a, b] = [projects[1]!, projects.find((p) => p.partition !== projects[1]!.partition)!];
      expect((await pd.verify()).ok).toBe(true);
      const forge = async (sql: string) =>
        pd.database.db.transaction(async (tx) => {
          await tx.query('SET LOCAL ROLE NONE'); // the owner, past the application's role
          await tx.query(sql, [a.runId, b.id]);
        });
      // Undo each forgery the way it was done (triggers off, as the owner), so the next starts from a clean log.
      const undo = (sql: string, table: string) =>
        pd.database.db.transaction(async (tx) => {
          await tx.query('SET LOCAL ROLE NONE');
          await tx.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
          await tx.query(sql, [a.runId, b.id]);
          await tx.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
        });

      // A copy of the run's second event, under project b: same stream, same version, another partition.
      await forge(
        `INSERT INTO events (stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
         SELECT stream_id, stream_version, gen_random_uuid(), $2::uuid, type, schema_version, data, metadata, recorded_at, prev_hash, hash
         FROM events WHERE stream_id = 'run-' || $1 AND stream_version = 2`,
      );
      const forked = await pd.verify();
      expect(forked.ok).toBe(false);
      expect(forked.firstBroken).toMatchObject({ streamId: `run-${a.runId}`, streamVersion: 2, reason: expect.stringMatching(/^version 2 follows \d+$/) });
      await undo(`DELETE FROM events WHERE stream_id = 'run-' || $1 AND project_id = $2::uuid`, 'events');
      expect((await pd.verify()).ok).toBe(true);

      // A chunk of the run re-filed under project b (deleted from its partition, inserted into b's).
      await pd.database.db.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE NONE');
        await tx.query('ALTER TABLE metric_chunks DISABLE TRIGGER USER');
        await tx.query(
          `WITH moved AS (DELETE FROM metric_chunks WHERE run_id = $1::uuid AND key = 'acc' RETURNING *)
           INSERT INTO metric_chunks SELECT position, idx, $2::uuid, run_id, key, n, first_step, last_step, min, max, last_value, steps, vals, times, blocks, digest, stride FROM moved`,
          [a.runId, b.id],
        );
        await tx.query('ALTER TABLE metric_chunks ENABLE TRIGGER USER');
      });
      const moved = await pd.verify();
      expect(moved.ok).toBe(false);
      expect(moved.firstBroken).toMatchObject({ streamId: `run-${a.runId}`, type: 'MetricsLogged' });
      expect(moved.firstBroken!.reason).toMatch(/names 1 metric chunks, 0 are stored|no MetricsLogged event of its project/);
    });
  });
}
