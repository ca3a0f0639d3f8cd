import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openPglite } from '@pedigree/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pedigreeServer, type Stopped } from './support/server.ts';

/**
 * The `pedigree` command as a user runs it: the real launcher in a child
 * process, against an embedded store in a temporary PEDIGREE_HOME. Creating a
 * PGlite store takes seconds, so the whole file shares one, and the tests run
 * in order: `start` fills it first, the tampering test spoils it last.
 * `start` serves until stopped: these tests stop it once it listens, and look
 * at what it printed (test/server.test.ts covers the serving).
 */
const root = path.resolve(import.meta.dirname, '..');
const bin = path.join(root, 'packages/cli/bin/pedigree.mjs');
let home: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function pedigree(...args: string[]): Promise<Result> {
  const env: NodeJS.ProcessEnv = { ...process.env, PEDIGREE_HOME: home, NO_COLOR: '1' };
  delete env.DATABASE_URL; // the embedded store, even where a server is configured
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: root, env, timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface RunRow {
  id: string;
  name: string;
  kind: string;
  status: string;
}

/** `pedigree start` with the human output, stopped (SIGTERM) as soon as it listens. */
async function startAndStop(): Promise<Stopped> {
  const server = await pedigreeServer({ home, json: false });
  try {
    await server.start();
    return await server.stop();
  } finally {
    server.kill();
  }
}

describe('pedigree CLI', () => {
  let firstStart: Stopped;
  let runsList: Result;
  let runs: RunRow[];
  const runNamed = (name: string) => runs.find((r) => r.name === name)!;

  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-cli-'));
    firstStart = await startAndStop();
    runsList = await pedigree('runs', '--json');
    runs = JSON.parse(runsList.stdout) as RunRow[];
  });

  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('start on an empty store records the sample, prints the tour, serves, and stops on SIGTERM', () => {
    expect(firstStart.stderr).toBe('');
    expect(firstStart).toMatchObject({ code: 0, leftover: false });
    expect(firstStart.stdout).toContain(`embedded PGlite store in ${home}`);
    expect(firstStart.stdout).toMatch(/Recorded \d+ events \(6 runs\)/);
    expect(firstStart.stdout).toMatch(/ID\s+NAME\s+KIND\s+STATUS/);
    expect(firstStart.stdout).toMatch(/Lineage of dpo/);
    expect(firstStart.stdout).toContain('train-mix  pretrain-mix');
    expect(firstStart.stdout).toContain('npx pedigree show');
    expect(firstStart.stdout).toMatch(/^Pedigree is serving http:\/\/127\.0\.0\.1:\d+ {2}\(API: \/api\/trpc, store: embedded PGlite store in .*, auth: open\)$/m);
    expect(firstStart.stdout).toMatch(/Stopping \(SIGTERM\)…\nStopped\.\n$/);
  });

  it('a second start records nothing', async () => {
    const again = await startAndStop();
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain('Recording');
    expect(again.stdout).toMatch(/holds \d+ events; nothing recorded/);
    expect(again.stdout).toContain('Lineage of dpo');
    expect(again.stdout.match(/^[0-9a-f]{8}  /gm)).toHaveLength(6); // rows of the runs table
  });

  it('runs --json lists every run with full ids', () => {
    expect(runsList.code).toBe(0);
    expect(runs.length).toBeGreaterThanOrEqual(6);
    for (const r of runs) {
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r).toMatchObject({ name: expect.any(String), kind: expect.any(String), status: 'completed' });
    }
    expect(runs.map((r) => r.name)).toEqual(expect.arrayContaining(['pretrain', 'midtrain', 'midtrain-concat', 'sft', 'dpo', 'eval']));
  });

  it('runs filters and prints a table', async () => {
    const table = await pedigree('runs', '--kind', 'midtrain');
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+KIND\s+STATUS\s+HYPERPARAMETERS\s+TRAIN\/LOSS\s+CREATED$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[1])).toEqual(['midtrain-concat', 'midtrain']);
    expect(lines[1]).toMatch(/^[0-9a-f]{8} /);
  });

  it('show <prefix> prints the run, its changed hyperparameter, edges, metrics', async () => {
    const sft = runNamed('sft');
    const show = await pedigree('show', sft.id.slice(0, 8));
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(sft.id);
    expect(show.stdout).toMatch(/lr\s+1e-4\s+→ 5e-5 at step 200 \(loss plateau\)/);
    expect(show.stdout).toMatch(/in\s+train-set\s+arith-sft\s+dataset/);
    expect(show.stdout).toMatch(/out\s+checkpoint\s+sft@400\s+checkpoint\s+400/);
    expect(show.stdout).toMatch(/train\/loss\s+400\s+0–399/);
  });

  it('events lists the audit log of a run', async () => {
    const evalRun = runNamed('eval');
    const events = await pedigree('events', evalRun.id.slice(0, 6));
    expect(events.code).toBe(0);
    const lines = events.stdout.trim().split('\n');
    expect(lines[1]).toMatch(/^\s*V\s+TYPE\s+RECORDED\s+HASH\s+DATA$/);
    expect(lines[2]).toMatch(/^\s*1\s+RunCreated\s+\S+ \S+\s+[0-9a-f]{10}\s+eval \(eval\)/);
    expect(events.stdout).toMatch(/EvalRecorded .* kv-recall\/exact-match @128 = /);
    expect(events.stdout).toMatch(/RunCompleted/);
  });

  it('lineage draws the ancestry down to the data mix components', async () => {
    const dpo = runNamed('dpo');
    const tree = await pedigree('lineage', dpo.id.slice(0, 8));
    expect(tree.code).toBe(0);
    expect(tree.stdout.split('\n')[0]).toMatch(/^dpo\s+dpo · completed/);
    expect(tree.stdout).toMatch(/made by pretrain/);
    expect(tree.stdout).toMatch(/30%\s+long-kv-native/);
    expect(tree.stdout).toMatch(/70%\s+pretrain-mix .*\(shown above\)/);
  });

  it('diff reports the common checkpoint, the first divergence and the swapped data-mix component; --json for scripts', async () => {
    const [a, b] = [runNamed('midtrain'), runNamed('midtrain-concat')];
    const diff = await pedigree('diff', a.id.slice(0, 8), b.id.slice(0, 8));
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stdout).toMatch(/common ancestor: pretrain@400 \(checkpoint/);
    expect(diff.stdout).toMatch(/first divergence: a midtrain .* b midtrain-concat/);
    expect(diff.stdout).toMatch(/- long-kv-native\s+weight 0\.3/);
    expect(diff.stdout).toMatch(/\+ long-kv-concatenated\s+weight 0\.3/);
    const json = JSON.parse((await pedigree('diff', a.id, b.id, '--json')).stdout) as { identical: boolean; stages: { kind: string; status: string }[] };
    expect(json.identical).toBe(false);
    expect(json.stages.map((s) => s.status)).toEqual(['shared', 'changed']);
    const self = await pedigree('diff', a.id, a.id);
    expect(self.stdout).toContain('nothing differs');
    const unknown = await pedigree('diff', a.id, '00000000-0000-4000-8000-000000000000');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('verify says OK and replay rebuilds, reporting events/s', async () => {
    const verify = await pedigree('verify');
    expect(verify).toMatchObject({ code: 0, stderr: '' });
    expect(verify.stdout).toMatch(/^OK\s+\d+ events in \d+ streams/);
    const replay = await pedigree('replay');
    expect(replay).toMatchObject({ code: 0, stderr: '' });
    expect(replay.stdout).toMatch(/from \d+ events .*events\/s/);
    const json = JSON.parse((await pedigree('replay', '--json')).stdout) as Record<string, number>;
    expect(json).toMatchObject({ ok: true, events: expect.any(Number), points: expect.any(Number), pointsPerSecond: expect.any(Number) });
  });

  it('sample records into a new project and refuses one that has runs', async () => {
    const sample = await pedigree('sample', '--project', 'second');
    expect(sample.code).toBe(0);
    const projects = JSON.parse((await pedigree('projects', '--json')).stdout) as { name: string; runs: number }[];
    expect(projects.map((p) => [p.name, p.runs])).toEqual([
      ['phi4-toy', 6],
      ['second', 6],
    ]);
    const again = await pedigree('sample', '--project', 'second');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^pedigree: project second already has 6 runs.*\n$/);
  });

  it('an unknown run id, or a store that is not there, exits 1 with one line on stderr', async () => {
    const missing = await pedigree('show', 'deadbeef');
    expect(missing).toMatchObject({ code: 1, stdout: '', stderr: 'pedigree: run deadbeef not found\n' });

    const nowhere = path.join(home, 'not-a-store');
    const noStore = await pedigree('runs', '--home', nowhere);
    expect(noStore.code).toBe(1);
    expect(noStore.stderr).toMatch(/^pedigree: no store in .*not-a-store; create one with `pedigree start`[^\n]*\n$/);
    expect(existsSync(nowhere)).toBe(false); // reading commands never create a store
  });

  it('usage errors exit 2 with one line on stderr', async () => {
    const results = await Promise.all([pedigree('frobnicate'), pedigree('runs', '--bogus'), pedigree('runs', '--limit', 'many'), pedigree('show')]);
    for (const r of results) {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^pedigree: [^\n]+\n$/);
    }
    expect(results[0]!.stderr).toContain("unknown command 'frobnicate'");
    expect(results[1]!.stderr).toContain('unknown option --bogus');
  });

  it('prints help and version', async () => {
    const [help, runsHelp, version] = await Promise.all([pedigree('--help'), pedigree('runs', '--help'), pedigree('--version')]);
    expect(help.code).toBe(0);
    for (const name of ['start', 'runs', 'show', 'events', 'lineage', 'replay', 'verify', 'migrate', 'projects', 'sample']) expect(help.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    expect(runsHelp.stdout).toContain('--status S');
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  // Last: it spoils the shared store.
  it('verify names the first altered event and exits 1; replay refuses it unless --force', async () => {
    const db = await openPglite(home);
    let position: number;
    try {
      const [target] = await db.query<{ position: number }>(`SELECT position FROM events WHERE type = 'RunCreated' ORDER BY position LIMIT 1`);
      position = target!.position;
      // Tampering needs the immutability trigger out of the way, as an attacker with the database's owner rights could.
      await db.exec('ALTER TABLE events DISABLE TRIGGER events_no_update_delete');
      await db.query(`UPDATE events SET data = jsonb_set(data, '{name}', '"renamed"') WHERE position = $1`, [position]);
    } finally {
      await db.close();
    }
    const verify = await pedigree('verify');
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`BROKEN  event at position ${position}: RunCreated #1`);
    expect(verify.stdout).toContain('altered after it was written');

    // replay checks the same chains: it refuses to serve the altered name, and says which event…
    const refused = await pedigree('replay');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain(`REFUSED  the hash chain is broken at position ${position}: RunCreated #1`);
    expect(refused.stdout).toContain('altered after it was written');
    expect(JSON.parse((await pedigree('runs', '--json')).stdout).map((r: RunRow) => r.name)).not.toContain('renamed');
    // …unless forced, and then it warns.
    const forced = await pedigree('replay', '--force');
    expect(forced.code).toBe(0);
    expect(forced.stderr).toContain(`warning: 1 event failed the hash-chain check (first: position ${position}, RunCreated #1`);
    expect(forced.stdout).toMatch(/Rebuilt the projections from \d+ events .*1 broken/);
    expect(JSON.parse((await pedigree('runs', '--json')).stdout).map((r: RunRow) => r.name)).toContain('renamed');
    // --skip-checks looks for nothing: it rebuilds, says the chains went unchecked, and cannot go with --force.
    const unchecked = await pedigree('replay', '--skip-checks');
    expect(unchecked.code).toBe(0);
    expect(unchecked.stdout).toMatch(/Rebuilt the projections from \d+ events .*the hash chains were not checked/);
    expect(JSON.parse((await pedigree('replay', '--skip-checks', '--json')).stdout)).toMatchObject({ ok: true, checked: false });
    const both = await pedigree('replay', '--skip-checks', '--force');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give one of them');
  });
});
