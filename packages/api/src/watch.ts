import { metricNumber, streamIds, type StoredEvent } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { tracked } from '@trpc/server';

export type RunUpdate =
  | { type: 'metrics'; position: number; points: { key: string; step: number; value: number; time: number }[] }
  | { type: 'status'; position: number; status: 'running' | 'completed' | 'failed'; error?: string }
  | { type: 'checkpoint'; position: number; artifactId: string; step: number; name: string }
  | { type: 'eval'; position: number; suite: string; task: string; score: number; contextLength?: number };

function toUpdate(e: StoredEvent): RunUpdate | null {
  switch (e.type) {
    case 'MetricsLogged':
      return {
        type: 'metrics',
        position: e.position,
        points: e.data.points.map((p) => ({ key: p.key, step: p.step, value: metricNumber(p.value), time: p.time })),
      };
    case 'RunStarted':
      return { type: 'status', position: e.position, status: 'running' };
    case 'RunCompleted':
      return { type: 'status', position: e.position, status: 'completed' };
    case 'RunFailed':
      return { type: 'status', position: e.position, status: 'failed', error: e.data.error };
    case 'CheckpointSaved':
      return { type: 'checkpoint', position: e.position, artifactId: e.data.artifactId, step: e.data.step, name: e.data.name };
    case 'EvalRecorded':
      return { type: 'eval', position: e.position, suite: e.data.suite, task: e.data.task, score: e.data.score, contextLength: e.data.contextLength };
    default:
      return null;
  }
}

/**
 * A run's updates after `afterPosition`, each exactly once and in order, then
 * live until the caller goes away. Each is tracked by its global position, so
 * a client that reconnects with `lastEventId` picks up where it stopped.
 */
export async function* watchRun(pedigree: Pedigree, runId: string, afterPosition: number, signal: AbortSignal | undefined) {
  const pending: StoredEvent[] = [];
  let wake: (() => void) | null = null;
  let failure: unknown = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  const sub = pedigree.subscribe(
    (events) => {
      pending.push(...events);
      notify();
    },
    { afterPosition, streamId: streamIds.run(runId), pollMs: 1000 },
  );
  sub.ready.catch((err: unknown) => {
    failure = err;
    notify();
  });
  signal?.addEventListener('abort', notify, { once: true });
  try {
    while (!signal?.aborted) {
      if (failure) throw failure;
      const e = pending.shift();
      if (!e) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const update = toUpdate(e);
      if (update) yield tracked(String(e.position), update);
    }
  } finally {
    signal?.removeEventListener('abort', notify);
    await sub.close();
  }
}
