import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createApiKey, revokeApiKey } from '@pedigree/api';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveInProcess } from './support/inprocess.ts';
import { freePort, pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';

/**
 * The CLI beside a running server, as the README's tour has it: `npm start`
 * in one terminal, `npx pedigree runs`, `show`, `lineage`… in another. The
 * read commands go through the `pedigree start` that holds the embedded store
 * (PGlite opens in one process at a time), and print what they print on the
 * store itself; the operator commands, which need the store itself, say who
 * holds it and change nothing.
 *
 * How we tried to break it: every read command, text and --json, compared
 * byte for byte with its output on the store itself once the server stopped;
 * --json with nothing extra on stderr; an unknown run and a too-short prefix
 * through the server; verify, replay, sample and migrate while it serves (the
 * event log and the runs are the same after, and it still serves); --server
 * with --home; --server and $PEDIGREE_SERVER at a dead port and at a non-HTTP
 * URL; a note left by a killed server (a dead pid), and one naming a live
 * process that serves nothing; a server that needs keys, asked with no key, a
 * revoked key, and a key of another project.
 */
let home: string;
let server: PedigreeServer;
const run = (...args: string[]) => pedigreeCommand(args);
const SERVING_NOTE = 'pedigree-serving.json';

/** The read commands, their arguments filled in once the runs exist; CREATED columns ("5s ago") only in --json. */
let reads: string[][];

async function outputs(): Promise<Map<string, { code: number; stdout: string }>> {
  const out = new Map<string, { code: number; stdout: string }>();
  // One at a time: the store itself opens in one process at a time.
  for (const args of reads) {
    const r = await run(...args, '--home', home);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    out.set(args.join(' '), { code: r.code, stdout: r.stdout });
  }
  return out;
}

describe('the CLI beside `pedigree start` on the embedded store', () => {
  let served: Map<string, { code: number; stdout: string }>;

  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-cli-server-'));
    const sample = await run('sample', '--home', home, '--json');
    expect(sample, sample.stderr).toMatchObject({ code: 0 });
    const created = await run('projects', 'create', 'empty-one', '--description', 'no runs yet', '--home', home);
    expect(created, created.stderr).toMatchObject({ code: 0 });
    const runs = JSON.parse((await run('runs', '--home', home, '--json')).stdout) as { id: string; name: string }[];
    const prefix = (name: string) => runs.find((r) => r.name === name)!.id.slice(0, 8);
    reads = [
      ['runs', '--json'],
      ['runs', '--kind', 'midtrain', '--project', 'phi4-toy', '--json'],
      ['show', prefix('sft')],
      ['show', prefix('sft'), '--json'],
      ['lineage', prefix('dpo')],
      ['lineage', prefix('dpo'), '--json'],
      ['diff', prefix('midtrain'), prefix('midtrain-concat')],
      ['diff', prefix('midtrain'), prefix('midtrain-concat'), '--all', '--json'],
      ['events', prefix('eval')],
      ['events', prefix('eval'), '--json'],
      ['projects', '--json'],
      ['export', '--openlineage'],
      ['export', '--openlineage', '--project', 'phi4-toy'],
    ];
    server = await pedigreeServer({ home, demo: 'none' });
    await server.start();
  });

  afterAll(async () => {
    server?.kill();
    rmSync(home, { recursive: true, force: true });
  });

  it('creates a project through the server (before the reads, which list it)', async () => {
    const created = await run('projects', 'create', 'while-serving', '--home', home, '--json');
    expect(created, created.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(created.stdout)).toMatchObject({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'while-serving' });
    const again = await run('projects', 'create', 'while-serving', '--home', home, '--json');
    expect(again).toMatchObject({ code: 1, stderr: 'pedigree: a project named "while-serving" already exists\n' });
  });

  it('reads through the server: every read command works, and --json adds nothing on stderr', async () => {
    served = new Map();
    const results = await Promise.all(reads.map((args) => run(...args, '--home', home)));
    reads.forEach((args, i) => {
      const r = results[i]!;
      expect(r, `${args.join(' ')}: ${r.stderr}`).toMatchObject({ code: 0 });
      if (args.includes('--json')) expect(r.stderr).toBe('');
      else expect(r.stderr).toBe(`(through \`pedigree start\`, pid ${server.pid}, at ${server.url}: it holds the store in ${home})\n`);
      served.set(args.join(' '), { code: r.code, stdout: r.stdout });
    });
    expect(JSON.parse(served.get('runs --json')!.stdout)).toHaveLength(6);
    expect(served.get(reads[2]!.join(' '))!.stdout).toMatch(/lr\s+1e-4\s+→ 5e-5 at step 200 \(loss plateau\)/);
    expect(served.get(reads[6]!.join(' '))!.stdout).toMatch(/common ancestor: pretrain@400 \(checkpoint/);
    expect(served.get('export --openlineage')!.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(12);
  });

  it('says errors as it does on the store: an unknown run, a prefix too short, an unknown project', async () => {
    const [missing, short, project] = await Promise.all([run('show', 'deadbeef', '--home', home, '--json'), run('lineage', 'abc', '--home', home, '--json'), run('runs', '--project', 'nope', '--home', home, '--json')]);
    expect(missing).toMatchObject({ code: 1, stdout: '', stderr: 'pedigree: run deadbeef not found\n' });
    expect(short).toMatchObject({ code: 1, stdout: '', stderr: 'pedigree: not a run id or id prefix: "abc"\n' });
    expect(project).toMatchObject({ code: 1, stdout: '', stderr: 'pedigree: project "nope" not found\n' });
  });

  it('operator commands say the server holds the store, exit 1, and change nothing', async () => {
    const health = async () => ((await (await fetch(`${server.url}/api/trpc/system.health`)).json()) as { result: { data: { json: { position: number } } } }).result.data.json.position;
    const before = { position: await health(), runs: (await run('runs', '--home', home, '--json')).stdout };
    for (const command of [['verify'], ['replay'], ['sample', '--project', 'another'], ['migrate']]) {
      const refused = await run(...command, '--home', home);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toBe(
        `pedigree: \`pedigree ${command[0]}\` needs the store in ${home} itself, and \`pedigree start\` (pid ${server.pid}, serving ${server.url}) holds it: stop that server first (read commands such as \`pedigree runs\` work while it serves)\n`,
      );
    }
    // Not through a server either: it would need the store all the same.
    expect(await run('verify', '--server', server.url)).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pedigree: `pedigree verify` works on the store itself, not through a server/) });
    expect(await health()).toBe(before.position);
    expect((await run('runs', '--home', home, '--json')).stdout).toBe(before.runs);
    expect(existsSync(path.join(home, SERVING_NOTE))).toBe(true);
  });

  it('--server names the server: with --home it is a usage error; a dead port or a non-HTTP URL says so', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const [viaFlag, viaEnv, both, deadFlag, deadEnv, notHttp] = await Promise.all([
      run('projects', '--server', server.url, '--json'),
      pedigreeCommand(['projects', '--json'], { env: { PEDIGREE_SERVER: server.url } }),
      run('runs', '--server', server.url, '--home', home),
      run('runs', '--server', dead),
      pedigreeCommand(['runs'], { env: { PEDIGREE_SERVER: dead } }),
      run('runs', '--server', 'localhost:4400'),
    ]);
    expect(viaFlag).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(viaFlag.stdout).map((p: { name: string }) => p.name)).toEqual(['phi4-toy', 'empty-one', 'while-serving']);
    expect(viaEnv).toMatchObject({ code: 0, stdout: viaFlag.stdout });
    expect(both).toMatchObject({ code: 2, stdout: '', stderr: 'pedigree: --server and --home name two different stores; give one\n' });
    for (const r of [deadFlag, deadEnv]) {
      expect(r).toMatchObject({ code: 1, stdout: '' });
      expect(r.stderr).toBe(`pedigree: cannot reach the Pedigree server at ${dead} (connection refused); is it running? (\`pedigree start\` serves one)\n`);
    }
    expect(notHttp).toMatchObject({ code: 2, stderr: 'pedigree: --server must start with http:// or https://, got "localhost:4400"\n' });
  });

  it('after the server stops (its note gone), the read commands work on the store itself, printing the same', async () => {
    const pid = server.pid!;
    const stopped = await server.stop();
    expect(stopped).toMatchObject({ code: 0, leftover: false });
    expect(existsSync(path.join(home, SERVING_NOTE))).toBe(false);
    // A note left behind by a server that was killed names a dead pid: ignored.
    writeFileSync(path.join(home, SERVING_NOTE), JSON.stringify({ pid, url: server.url }));
    const embedded = await outputs();
    for (const [command, result] of embedded) {
      // The one column that moves with the clock is in the text tables only, which these leave out.
      expect(result.stdout, command).toBe(served.get(command)!.stdout);
    }
    const verify = await run('verify', '--home', home);
    expect(verify, verify.stderr).toMatchObject({ code: 0, stderr: '' });
  }, 600_000);

  it('a note naming a live process that serves nothing: a clear error, not a hang', async () => {
    // The test runner is alive and listens on no port of the note.
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    writeFileSync(path.join(home, SERVING_NOTE), JSON.stringify({ pid: process.pid, url: nowhere }));
    const r = await run('runs', '--home', home, '--json');
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toBe(`pedigree: cannot reach \`pedigree start\` (pid ${process.pid}) at ${nowhere}, which holds the store in ${home} (connection refused)\n`);
    rmSync(path.join(home, SERVING_NOTE));
  });
});

describe('the CLI against a server that needs API keys', () => {
  let pd: Pedigree;
  let api: Awaited<ReturnType<typeof serveInProcess>>;
  let key: string;
  let otherRun: string;

  beforeAll(async () => {
    pd = await openPedigree({ dir: ':memory:' });
    const { projectId } = await pd.tracker.createProject({ name: 'mine' });
    await pd.tracker.createRun({ projectId, name: 'my-run', kind: 'pretrain' });
    const other = await pd.tracker.createProject({ name: 'theirs' });
    otherRun = (await pd.tracker.createRun({ projectId: other.projectId, name: 'their-run', kind: 'pretrain' })).runId;
    key = (await createApiKey(pd.database.db, projectId, 'cli')).key;
    api = await serveInProcess(pd, 'keys');
  });

  afterAll(async () => {
    await api?.close();
    await pd?.close();
  });

  it('with no key says to set PEDIGREE_API_KEY; with the key reads its project only; refuses another project as not found', async () => {
    const none = await run('runs', '--server', api.url);
    expect(none).toMatchObject({ code: 1, stdout: '' });
    expect(none.stderr).toBe(`pedigree: the Pedigree server at ${api.url} needs an API key: set PEDIGREE_API_KEY to one (\`pedigree keys create --project NAME\` makes one)\n`);

    const env = { PEDIGREE_API_KEY: key };
    const runs = await pedigreeCommand(['runs', '--server', api.url, '--json'], { env });
    expect(runs, runs.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(runs.stdout).map((r: { name: string }) => r.name)).toEqual(['my-run']);
    const theirs = await pedigreeCommand(['show', otherRun, '--server', api.url], { env });
    expect(theirs).toMatchObject({ code: 1, stdout: '', stderr: `pedigree: run "${otherRun}" not found in this API key's project\n` });
  });

  it('a revoked key is refused, naming the variable', async () => {
    const spare = await createApiKey(pd.database.db, (await pd.lineage.projectByName('mine')).id, 'spare');
    await revokeApiKey(pd.database.db, spare.id);
    const r = await pedigreeCommand(['projects', '--server', api.url], { env: { PEDIGREE_API_KEY: spare.key } });
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: `pedigree: the Pedigree server at ${api.url} refused the key in PEDIGREE_API_KEY: unknown or revoked API key\n` });
  });
});
