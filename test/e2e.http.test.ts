/**
 * End to end through real HTTP: the real `pedigree start` server (Next.js,
 * /api/trpc), the typed client, both storage modes, keys required.
 *
 * Four runs log 100,000 points concurrently while a second client watches
 * each run over SSE. Part way through, the server is stopped and started
 * again on the same port and store. How we tried to break it: requests in
 * flight when the server goes down (their responses are lost, so the client
 * retries with the same event ids), subscriptions cut mid-stream (they
 * reconnect with the last event id they saw). Then: every point is in the
 * store exactly once, every point reached the watcher exactly once, and each
 * run's audit log holds no duplicated batch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Pedigree as Client, type RunUpdate } from '@pedigree/client';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';
import { createServerDatabase, serverUnavailable, SERVER_URL } from './support/stores.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const RUNS = 4;
const POINTS_PER_RUN = 25_000; // 100,000 in all
const KEYS = ['train/loss', 'lr'] as const;
const STEPS = POINTS_PER_RUN / KEYS.length;

const serverSkip = await serverUnavailable();
const modes = [
  { name: 'embedded PGlite', skip: null as string | null },
  { name: 'PostgreSQL server', skip: serverSkip && !process.env.CI ? serverSkip : null },
];

for (const mode of modes) {
  describe.skipIf(mode.skip)(`end to end over HTTP, ${mode.name}`, () => {
    let server: PedigreeServer;
    let apiKey: string;
    let cleanup: () => Promise<void> = async () => {};
    const store: { home?: string; url?: string } = {};

    beforeAll(async () => {
      if (mode.name.startsWith('embedded')) {
        store.home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-e2e-'));
        cleanup = async () => rmSync(store.home!, { recursive: true, force: true });
      } else {
        const db = await createServerDatabase();
        store.url = db.url;
        cleanup = db.drop;
        const migrated = await pedigreeCommand(['migrate', '--url', db.url]);
        expect(migrated.code, migrated.stderr).toBe(0);
      }
      const flags = store.home ? ['--home', store.home] : ['--url', store.url!];
      const created = await pedigreeCommand(['projects', 'create', 'e2e', ...flags]);
      expect(created.code, created.stderr).toBe(0);
      const key = await pedigreeCommand(['keys', 'create', '--project', 'e2e', '--name', 'e2e-test', '--json', ...flags]);
      expect(key.code, key.stderr).toBe(0);
      apiKey = (JSON.parse(key.stdout) as { key: string }).key;
      server = await pedigreeServer({ ...store, auth: 'keys' });
      await server.start();
    });

    afterAll(async () => {
      server?.kill();
      await cleanup();
    });

    it('4 runs × 25,000 points, watched live, survive a server restart: each point stored once and seen once', async () => {
      const retries: string[] = [];
      const writer = await connect({ url: server.url, apiKey, batchSize: 1_000, flushIntervalMs: 50, handleSignals: false, onRetry: (what) => retries.push(what) });
      const watcher = await connect({ url: server.url, apiKey, handleSignals: false });
      const runs = await Promise.all(Array.from({ length: RUNS }, (_, i) => writer.startRun({ project: 'e2e', name: `run-${i}`, kind: 'pretrain', hyperparameters: { lr: 3e-4, seed: i } })));

      // One subscription per run, from its beginning; it reconnects by itself after the restart.
      const seen = runs.map(() => new Map<string, number>());
      const finished = runs.map(() => deferred());
      const subscriptions = await Promise.all(
        runs.map(
          (run, i) =>
            new Promise<{ close(): void }>((resolve) => {
              const sub = watcher.watch(
                run.id,
                {
                  onStarted: () => resolve(sub),
                  onUpdate: (u: RunUpdate) => {
                    if (u.type === 'metrics') for (const p of u.points) seen[i]!.set(`${p.key}@${p.step}`, (seen[i]!.get(`${p.key}@${p.step}`) ?? 0) + 1);
                    if (u.type === 'status' && u.status === 'completed') finished[i]!.resolve();
                  },
                  onError: (err) => finished[i]!.reject(err),
                },
              );
            }),
        ),
      );

      // Log in slices, so the restart lands while all four are mid-way.
      let restarted = false;
      const restart = async () => {
        restarted = true;
        const stopped = await server.stop('SIGTERM');
        expect(stopped.code, stopped.stderr).toBe(0);
        expect(stopped.leftover).toBe(false);
        await server.start();
      };
      let restarting: Promise<void> | null = null;
      await Promise.all(
        runs.map(async (run, i) => {
          for (let step = 0; step < STEPS; step++) {
            run.log({ 'train/loss': 3 * Math.exp(-step / 3000) + 0.01 * i, lr: 3e-4 }, step);
            if (step % 500 === 499) {
              await new Promise((r) => setTimeout(r, 5));
              if (i === 0 && !restarted && step >= STEPS * 0.4) restarting = restart();
            }
          }
          await run.finish();
        }),
      );
      await restarting;
      expect(restarted).toBe(true);
      expect(retries.length, 'the restart should have made the client retry').toBeGreaterThan(0);

      await Promise.race([Promise.all(finished.map((f) => f.promise)), new Promise((_, reject) => setTimeout(() => reject(new Error('watchers did not see every run complete')), 60_000))]);
      for (const s of subscriptions) s.close();

      for (const [i, run] of runs.entries()) {
        // The watcher: every point exactly once.
        expect(seen[i]!.size).toBe(POINTS_PER_RUN);
        expect([...seen[i]!.values()].every((n) => n === 1)).toBe(true);
        // The store: every point exactly once.
        const view = await watcher.run(run.id);
        expect(view.status).toBe('completed');
        expect(view.summary).toMatchObject({ points: POINTS_PER_RUN });
        for (const key of KEYS) {
          const points = await watcher.metrics(run.id, key, { limit: STEPS + 10 });
          expect(points).toHaveLength(STEPS);
          expect(new Set(points.map((p) => p.step)).size).toBe(STEPS);
        }
        // The audit log: no batch stored twice.
        const { events } = await watcher.events(run.id, { limit: 10_000 });
        const batches = events.filter((e) => e.type === 'MetricsLogged');
        const logged = batches.reduce((n, e) => n + (e.data as { points: unknown[] }).points.length, 0);
        expect(logged).toBe(POINTS_PER_RUN);
      }
      await writer.close();
      await watcher.close();
    });
  });
}
void SERVER_URL;

/** Promise.withResolvers, which Node 20 lacks. */
function deferred() {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
