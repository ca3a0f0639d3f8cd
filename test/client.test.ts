/**
 * The client as a script uses it, in embedded mode (no server) and around
 * process exit. How we tried to break it: a script that logs and simply
 * ends without finish() (the buffer must still reach the store), one killed
 * with SIGINT mid-run (buffer flushed, run marked failed, exit 130), a point
 * that is not a number, logging after finish, and a server that is not there.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, PedigreeError } from '@pedigree/client';

const root = path.resolve(import.meta.dirname, '..');
// `node --import tsx`, not the tsx CLI: that one is a parent process relaying signals to a child,
// and the test must signal the process that holds the store.
const node = (file: string) => [process.execPath, ['--import', 'tsx', file]] as const;

/** A script in the repository (so that it resolves the workspace packages) that writes to the store in `home`. */
function script(name: string, home: string, body: string): string {
  const file = path.join(root, 'test', `.client-script-${name}-${process.pid}.ts`);
  writeFileSync(file, `import { connect } from '@pedigree/client';\nconst home = ${JSON.stringify(home)};\n${body}\n`);
  return file;
}

describe('client, embedded', () => {
  let home: string;
  const scripts: string[] = [];
  beforeAll(() => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-client-'));
  });
  afterAll(() => {
    for (const s of scripts) rmSync(s, { force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it('logs, checkpoints, evaluates, forks and reads back without a server', async () => {
    const pd = await connect({ embedded: home, handleSignals: false });
    try {
      const data = await pd.registerArtifact({ project: 'local', name: 'corpus', spec: { kind: 'dataset', source: 'synthetic', params: { seed: 3 } } });
      const run = await pd.startRun({ project: 'local', name: 'pre', kind: 'pretrain', hyperparameters: { lr: 1e-3 }, inputs: [{ artifactId: data.artifactId, role: 'train-mix' }] });
      for (let step = 0; step < 300; step++) run.log({ loss: 1 / (step + 1) });
      expect(() => run.log({ loss: 'high' as unknown as number })).toThrow(PedigreeError);
      const ckpt = await run.checkpoint({ step: 299, digest: `sha256:${'ab'.repeat(32)}`, manifest: { wte: [16, 8] } });
      await run.eval({ suite: 'recall', task: 'kv', score: 0.75, contextLength: 64 });
      await run.finish();
      expect(() => run.log({ loss: 0 })).toThrow(/has ended/);

      const view = await pd.run(run.id);
      expect(view).toMatchObject({ status: 'completed', hyperparameters: { lr: 1e-3 }, summary: { points: 300 } });
      expect((await pd.metrics(run.id, 'loss')).map((p) => p.step)).toEqual(Array.from({ length: 300 }, (_, i) => i));
      expect(await pd.evals(run.id)).toEqual([expect.objectContaining({ suite: 'recall', score: 0.75 })]);

      const sft = await pd.startRun({ project: 'local', name: 'sft', kind: 'sft', forkOf: { runId: run.id, checkpointId: ckpt.artifactId } });
      await sft.finish();
      const graph = await pd.lineage(sft.id);
      expect(graph.nodes.map((n) => n.id)).toEqual(expect.arrayContaining([run.id, ckpt.artifactId, data.artifactId]));
      expect((await pd.run(sft.id)).hyperparameters).toMatchObject({ lr: 1e-3 });
    } finally {
      await pd.close();
    }
  });

  it('buffers points as columns: a call with a bad value logs none of it; many keys, batch edges, a growing buffer and non-finite values read back bit for bit', async () => {
    // How I tried to break it: a value that is not a number after good ones in the same call, a buffer that has to grow
    // (batches of 3,000 past the first 1,024 points of room), calls whose keys straddle a batch edge, keys first seen
    // mid-run, and NaN, ±Infinity and -0 (stored as 0) beside ordinary numbers.
    const pd = await connect({ embedded: home, handleSignals: false, batchSize: 3000, flushIntervalMs: 60_000, allowNonFinite: true });
    try {
      const run = await pd.startRun({ project: 'local', name: 'columns', kind: 'custom' });
      const special = [NaN, Infinity, -Infinity, -0, Number.MAX_VALUE, Number.MIN_VALUE];
      const expected = new Map<string, { step: number; value: number }[]>();
      const log = (values: Record<string, number>, step: number) => {
        run.log(values, step);
        for (const [key, value] of Object.entries(values)) {
          if (!expected.has(key)) expected.set(key, []);
          expected.get(key)!.push({ step, value: Object.is(value, -0) ? 0 : value });
        }
      };
      for (let step = 0; step < 2500; step++) {
        log({ loss: 1 / (step + 1), lr: step % 7 === 0 ? special[(step / 7) % special.length]! : step, ...(step >= 1200 ? { [`late/${step % 3}`]: step } : {}) }, step);
        if (step === 999) {
          const before = run.pending;
          expect(() => run.log({ loss: 5, acc: 'x' as unknown as number, lr: 1 }, 5000)).toThrow(/acc must be a number/);
          expect(run.pending).toBe(before); // nothing of the refused call was buffered
        }
      }
      log(Object.fromEntries(Array.from({ length: 50 }, (_, k) => [`wide/${k}`, special[k % special.length]!])), 2500);
      await run.finish();
      expect(run.pointsSent).toBe([...expected.values()].reduce((n, ps) => n + ps.length, 0));
      for (const [key, points] of expected) {
        const back = (await pd.metrics(run.id, key)).map((p) => ({ step: p.step, value: p.value }));
        expect(back.length, key).toBe(points.length);
        back.forEach((p, i) => {
          expect(p.step, key).toBe(points[i]!.step);
          expect(Object.is(p.value, points[i]!.value), `${key} at ${p.step}: ${p.value} vs ${points[i]!.value}`).toBe(true);
        });
      }
    } finally {
      await pd.close();
    }
  });

  it('flushes a script that ends without finish(); on SIGINT flushes, marks the run failed, exits 130', async () => {
    const ends = script(
      'ends',
      home,
      `const pd = await connect({ embedded: home, flushIntervalMs: 200 });
       const run = await pd.startRun({ project: 'local', name: 'forgetful', kind: 'custom' });
       for (let i = 0; i < 1234; i++) run.log({ x: i }, i);
       console.log(run.id);`,
    );
    scripts.push(ends);
    const forgetful = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(...node(ends), { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr })),
    );
    expect(forgetful.code, forgetful.stderr).toBe(0);

    const interrupted = script(
      'interrupted',
      home,
      `const pd = await connect({ embedded: home, flushIntervalMs: 60_000 });
       const run = await pd.startRun({ project: 'local', name: 'interrupted', kind: 'custom' });
       for (let i = 0; i < 777; i++) run.log({ y: i }, i);
       console.log(run.id);
       setInterval(() => {}, 1000);`,
    );
    scripts.push(interrupted);
    const child = spawn(...node(interrupted), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const deadline = Date.now() + 60_000;
    while (!/[0-9a-f-]{36}/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, err).toBe(130);

    const pd = await connect({ embedded: home, handleSignals: false });
    try {
      const a = await pd.run(forgetful.stdout.trim());
      expect(a.summary).toMatchObject({ points: 1234 });
      expect(a.status).toBe('running'); // ended without finish(): its points are kept, its status says so
      const b = await pd.run(out.trim());
      expect(b).toMatchObject({ status: 'failed', error: 'interrupted by SIGINT', summary: { points: 777 } });
    } finally {
      await pd.close();
    }
  });

  it('says clearly when there is no server, and refuses a bad url', async () => {
    await expect(connect({ url: 'http://127.0.0.1:9', retry: { retryForMs: 200 }, handleSignals: false })).rejects.toThrow(/connect: cannot reach the server/);
    await expect(connect({ url: 'localhost:4400' })).rejects.toThrow(/must start with http/);
    await expect(connect({})).rejects.toThrow(/no server/);
  });
});
