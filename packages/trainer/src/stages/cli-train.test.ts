import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `pedigree train` as a user runs it: the real launcher in a child process,
 * an embedded store in a temporary PEDIGREE_HOME, a config file on disk.
 */
const root = path.resolve(import.meta.dirname, '../../../..');
const bin = path.join(root, 'packages/cli/bin/pedigree.mjs');
let dir: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function pedigree(...args: string[]): Promise<Result> {
  const env: NodeJS.ProcessEnv = { ...process.env, PEDIGREE_HOME: path.join(dir, 'store'), NO_COLOR: '1' };
  delete env.DATABASE_URL;
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: dir, env, timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-cli-train-'));
  writeFileSync(
    path.join(dir, 'stage.json'),
    JSON.stringify({
      project: 'cli-train',
      name: 'pretrain',
      model: { vocab: 32, dModel: 16, context: 32 },
      optimizer: { lr: 0.03, warmupSteps: 2 },
      steps: 20,
      batchSize: 4,
      evalEvery: 10,
      checkpointEvery: 10,
      data: { sources: [{ name: 'web', generator: 'language', weight: 1, docs: 64 }], heldoutDocs: 16 },
    }),
  );
  writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ model: { vocab: 'x' }, steps: 0, data: { sources: [{ name: 'a', generator: 'language', weight: 0.5 }] } }));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pedigree train', () => {
  it('trains from a config, then forks a checkpoint with a changed hyperparameter; bad input is explained', async () => {
    const [first, bad, none] = await Promise.all([pedigree('train', '--config', 'stage.json', '--json'), pedigree('train', '--config', 'bad.json'), pedigree('train')]);

    // bad input: every bad field, one per line, nothing trained
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      `pedigree: bad.json: 3 problems:\n  model.vocab: expected number, received string\n  steps: Too small: expected number to be >=1\n  data.sources: weights must sum to 1, they sum to 0.5 (a 0.5)\n`,
    );
    expect(none).toMatchObject({ code: 2, stderr: 'pedigree: train needs --config FILE (or --resume RUN, --fork RUN); see `pedigree train --help`\n' });

    expect(first.code, first.stderr).toBe(0);
    const run = JSON.parse(first.stdout) as { runId: string; firstLoss: number; lastLoss: number; checkpoints: { step: number; path: string; artifactId: string }[] };
    expect(run.lastLoss).toBeLessThan(run.firstLoss);
    expect(run.checkpoints.map((c) => c.step)).toEqual([10, 20]);
    expect(run.checkpoints[0]!.path.startsWith(path.join(dir, 'checkpoints'))).toBe(true);
    // progress goes to stderr with --json: plain lines (not a terminal), every 10%
    expect(first.stderr).toContain(`Recording into the embedded PGlite store in ${path.join(dir, 'store')}`);
    expect(first.stderr).toMatch(/^pretrain {2}step 10\/20 {3}50% {2}loss \d\.\d{4} {2}eval \d\.\d{4} {2}[\d.]+k? tok\/s {2}ETA \d+s$/m);
    expect(first.stderr).not.toContain('\r');

    // the human output, forking by id prefix @ step (the audit log of a fork is checked in train.test.ts)
    const fork = await pedigree('train', '--fork', `${run.runId.slice(0, 8)}@10`, '--set', 'name=low-lr,optimizer.lr=0.003,steps=10');
    expect(fork.code, fork.stderr).toBe(0);
    expect(fork.stdout).toMatch(/^run [0-9a-f]{8} {2}low-lr \(pretrain\) in project cli-train: [\d,]+ parameters, backend reference \(TypeScript\)$/m);
    expect(fork.stdout).toMatch(new RegExp(`forked from run ${run.runId.slice(0, 8)} \\(pretrain\\) at pretrain@10 \\(step 10\\): weights only, fresh optimizer`));
    expect(fork.stdout).toMatch(/^low-lr {2}step 10\/10 {2}100% .* in \d+s$/m);
    expect(fork.stdout).toMatch(/^done: low-lr steps 0→10/m);
    expect(fork.stdout).toMatch(/^Next: pedigree show [0-9a-f]{8}/m);
  });
});
