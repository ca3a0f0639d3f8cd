/**
 * Tamper evidence past the hash chain (issue 13, item 5), on both backends,
 * written as attacks by someone with the database's owner or superuser
 * rights (test/support/tamper.ts): a checkpoint is signed, then (a) the last
 * event is deleted, (b) a forged event with a correctly recomputed hash is
 * inserted before the checkpoint's end, (c) a value is changed and the rest of
 * its stream re-hashed. The chain check misses (a)–(c) — each forgery is a
 * valid chain — and the checkpoint catches each, naming what differs. A log
 * that only grew passes; and tampering done before any checkpoint existed is
 * beyond what a checkpoint can see.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkLogAgainst,
  logTreeHead,
  LogRewrittenError,
  LogTreeFollower,
  openCheckpoint,
  signCheckpoint,
  verifyConsistency,
  type Checkpoint,
} from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';
import { behindTheStoresBack, burnPositions, deleteLastEvent, documentedEventHash, insertForgedEvent, lastEvent, rewriteAndRehash, type RawEvent } from './support/tamper.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');

/** Some history: a project, two runs with a few events each, and a gap in positions (a failed transaction's). */
async function record(pd: Pedigree): Promise<{ projectId: string; runIds: string[]; gap: number[] }> {
  const { projectId } = await pd.tracker.createProject({ name: `p-${randomUUID().slice(0, 8)}` });
  const runIds: string[] = [];
  let gap: number[] = [];
  for (const name of ['pretrain', 'midtrain']) {
    const { runId } = await pd.tracker.createRun({ projectId, name, kind: name === 'pretrain' ? 'pretrain' : 'midtrain', hyperparameters: { lr: 3e-4, rope_base: 10_000 } });
    await pd.tracker.startRun(runId);
    await pd.tracker.logMetrics(runId, [0, 1, 2].map((step) => ({ key: 'train/loss', step, value: 2 / (step + 1), time: 1_700_000_000_000 + step })));
    await pd.tracker.addTag(runId, 'honest');
    if (gap.length === 0) gap = await burnPositions(pd.database.db, 2);
    runIds.push(runId);
  }
  return { projectId, runIds, gap };
}

/** Takes a signed checkpoint of the log now, and reads it back as a verifier would (signature checked). */
async function checkpointNow(pd: Pedigree): Promise<Checkpoint> {
  const head = await logTreeHead(pd.database.db);
  const note = signCheckpoint({ origin: 'pedigree.local/test', ...head, timestamp: new Date() }, privateKey);
  return openCheckpoint(note, publicKey).checkpoint;
}

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`signed checkpoints on ${backend.name}`, () => {
    let pd: Pedigree;
    let history: Awaited<ReturnType<typeof record>>;
    let checkpoint: Checkpoint;

    /** A fresh store with history and a checkpoint of it, for each attack. */
    async function fresh(): Promise<void> {
      pd = await backend.open();
      history = await record(pd);
      checkpoint = await checkpointNow(pd);
      expect((await pd.verify()).ok).toBe(true);
      expect((await checkLogAgainst(pd.database.db, checkpoint)).ok).toBe(true);
    }
    afterAll(() => backend.dispose());

    describe('a log that only grew', () => {
      beforeAll(fresh);

      it('extends the checkpoint: same root at its size, and a consistency proof to the current size that verifies', async () => {
        await pd.tracker.addTag(history.runIds[0]!, 'later');
        await pd.tracker.logMetrics(history.runIds[1]!, [{ key: 'eval/loss', step: 3, value: 0.5, time: 1_700_000_000_100 }]);
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check).toMatchObject({ ok: true, current: { treeSize: checkpoint.treeSize + 2 } });
        expect(check.rootAtCheckpoint).toBe(checkpoint.rootHash.toString('base64'));
        // What a third party holding only the two tree heads and the proof checks:
        const proof = check.consistencyProof!.map((h) => Buffer.from(h, 'base64'));
        expect(verifyConsistency(checkpoint.treeSize, check.current.treeSize, checkpoint.rootHash, Buffer.from(check.current.rootHash, 'base64'), proof)).toBe(true);
        expect(check.current.rootHash).toBe((await logTreeHead(pd.database.db)).rootHash.toString('base64'));
      });

      it('the hashes are the documented ones: recomputed from the page’s algorithm (JCS by another implementation), they match', async () => {
        const rows = await pd.database.db.query<RawEvent>('SELECT * FROM events ORDER BY position');
        const heads = new Map<string, string>();
        for (const row of rows) {
          const prev = heads.get(row.stream_id) ?? '0'.repeat(64);
          expect(row.prev_hash).toBe(prev);
          expect(documentedEventHash(prev, row)).toBe(row.hash);
          heads.set(row.stream_id, row.hash);
        }
      });
    });

    describe('(a) the last event deleted', () => {
      beforeAll(fresh);

      it('leaves every chain intact, and is caught as truncation', async () => {
        await deleteLastEvent(pd);
        expect((await pd.verify()).ok).toBe(true); // the chain alone cannot see it
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.ok).toBe(false);
        expect(check.problem).toEqual({
          code: 'TRUNCATED',
          message: `the log holds ${checkpoint.treeSize - 1} events, the checkpoint vouches for ${checkpoint.treeSize} events: 1 event removed (the tail truncated, or events deleted)`,
        });
      });

      it('stays caught when the log grows past the checkpoint’s size again', async () => {
        await pd.tracker.addTag(history.runIds[0]!, 'cover-up-1');
        await pd.tracker.addTag(history.runIds[0]!, 'cover-up-2');
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.ok).toBe(false);
        expect(check.problem!.code).toBe('REMOVED');
        expect(check.problem!.message).toMatch(/1 event deleted$/);
      });
    });

    describe('(b) a forged event inserted before the checkpoint', () => {
      beforeAll(fresh);

      it('is a valid chain of its own, and is caught as an insert', async () => {
        expect(history.gap[0]).toBeLessThan(checkpoint.lastPosition!);
        await insertForgedEvent(pd, history.gap[0]!);
        expect((await pd.verify()).ok).toBe(true); // the chain alone cannot see it
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.ok).toBe(false);
        expect(check.problem!.code).toBe('INSERTED');
        expect(check.problem!.message).toMatch(new RegExp(`${checkpoint.treeSize + 1} events lie at or before position ${checkpoint.lastPosition} where the checkpoint counted ${checkpoint.treeSize}: 1 event inserted \\(forged\\)$`));
      });

      it('is caught at position 0 and below too, where a reader starting "after position 0" would not look', async () => {
        await insertForgedEvent(pd, -5);
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.problem!.code).toBe('INSERTED');
        expect(check.problem!.message).toMatch(/2 events inserted/);
      });
    });

    describe('(c) a value changed and the rest of its stream re-hashed', () => {
      beforeAll(fresh);

      it('is a valid chain, and is caught as rewritten history', async () => {
        const [tag] = await pd.database.db.query<{ position: number }>(`SELECT position FROM events WHERE type = 'HyperparametersDeclared' AND stream_id = $1`, [`run-${history.runIds[0]}`]);
        await rewriteAndRehash(pd, tag!.position, { values: { lr: 3e-3, rope_base: 10_000 } });
        expect((await pd.verify()).ok).toBe(true); // the chain alone cannot see it
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.ok).toBe(false);
        expect(check.problem!.code).toBe('REWRITTEN');
        expect(check.problem!.message).toContain(`no longer hash to the checkpoint's root: an event at or before position ${checkpoint.lastPosition} was altered and its hash recomputed`);
        expect(check.rootAtCheckpoint).not.toBe(checkpoint.rootHash.toString('base64'));
      });
    });

    describe('positions rewritten, events deleted from the middle', () => {
      beforeAll(fresh);

      it('renumbering the last checkpointed event is caught even though every hash is the same', async () => {
        const last = await lastEvent(pd.database.db);
        await behindTheStoresBack(pd.database.db, async (tx) => {
          await tx.query('UPDATE events SET position = position + 1000 WHERE position = $1', [last.position]);
        });
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.problem).toMatchObject({ code: 'MOVED' });
      });

      it('a delete under a following tree stops it from signing again', async () => {
        const follower = new LogTreeFollower();
        await follower.advance(pd.database.db);
        const [first] = await pd.database.db.query<{ position: number }>('SELECT min(position) AS position FROM events');
        await behindTheStoresBack(pd.database.db, async (tx) => {
          await tx.query('DELETE FROM events WHERE position = $1', [first!.position]);
        });
        await expect(follower.advance(pd.database.db)).rejects.toThrow(LogRewrittenError);
        const check = await checkLogAgainst(pd.database.db, checkpoint);
        expect(check.ok).toBe(false);
      });
    });

    describe('tampering before any checkpoint was taken', () => {
      beforeAll(async () => {
        pd = await backend.open();
        history = await record(pd);
      });

      it('cannot be seen: a checkpoint vouches for the log as it was when signed, rewritten or not', async () => {
        const [event] = await pd.database.db.query<{ position: number }>(`SELECT position FROM events WHERE type = 'TagAdded' ORDER BY position LIMIT 1`);
        await rewriteAndRehash(pd, event!.position, { tag: 'rewritten-before-any-checkpoint' });
        const late = await checkpointNow(pd);
        expect((await pd.verify()).ok).toBe(true);
        expect((await checkLogAgainst(pd.database.db, late)).ok).toBe(true);
        // Only an earlier checkpoint, or a copy of the events held elsewhere, could tell.
      });
    });

    describe('the follower (what `pedigree start` signs with)', () => {
      beforeAll(async () => {
        pd = await backend.open();
        history = await record(pd);
      });

      it('gives the same head as a full recomputation, batch after batch', async () => {
        const follower = new LogTreeFollower();
        const first = await follower.advance(pd.database.db);
        expect(first.rootHash.equals((await logTreeHead(pd.database.db)).rootHash)).toBe(true);
        await pd.tracker.addTag(history.runIds[1]!, 'more');
        const second = await follower.advance(pd.database.db);
        const full = await logTreeHead(pd.database.db, { batch: 3 });
        expect(second).toEqual(full);
        expect(second.treeSize).toBe(first.treeSize + 1);
        const check = await checkLogAgainst(pd.database.db, { treeSize: first.treeSize, rootHash: first.rootHash, lastPosition: first.lastPosition }, { batch: 2 });
        expect(check.ok).toBe(true);
      });
    });
  });
}
