/**
 * The TypeScript notebooks in examples/, run headless as a user would:
 * `jupyter nbconvert --to notebook --execute` on Deno's Jupyter kernel (the
 * npm devDependency `deno`; the kernel spec is the repository's own,
 * examples/jupyter/kernels/deno, found through JUPYTER_PATH, so nothing is
 * registered in the home directory).
 *
 * First a throwaway notebook proves the plumbing: the kernel starts, and a
 * cell in examples/ imports the workspace packages (bare `@pedigree/*`
 * specifiers and relative paths to their TypeScript sources) without Deno
 * downloading anything. Then examples/quickstart.ipynb: its code cells pass
 * `deno check` (the kernel itself does not type-check), and it runs against a
 * real `pedigree start` (embedded store, API keys required); the test checks
 * both what the notebook printed and what the store holds, read through the
 * server.
 *
 * Needs Debian `jupyter-nbconvert` (scripts/setup.mjs --test installs it) and
 * `npm ci`. Without them the tests are skipped with the reason printed, except
 * under CI, where that is a failure.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '@pedigree/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';

const root = path.resolve(import.meta.dirname, '..');
const EXAMPLES = path.join(root, 'examples');
const JUPYTER_DIR = path.join(EXAMPLES, 'jupyter');
const DENO = path.join(root, 'node_modules', '.bin', 'deno');
const NBCONVERT_TIMEOUT_MS = 150_000;
/** Setup starts a kernel (and, for the quickstart, a store and a server) and runs a whole notebook. */
const SETUP_TIMEOUT_MS = 300_000;

function missingTools(): string | null {
  const missing: string[] = [];
  if (spawnSync('jupyter', ['nbconvert', '--version'], { stdio: 'ignore' }).status !== 0) {
    missing.push('jupyter-nbconvert (Debian jupyter-nbconvert jupyter-client python3-ipykernel: `node scripts/setup.mjs --test` installs them)');
  }
  if (spawnSync(DENO, ['--version'], { stdio: 'ignore' }).status !== 0) missing.push(`deno at ${DENO} (the npm devDependency: npm ci)`);
  return missing.length ? `missing ${missing.join('; ')}` : null;
}

const missing = missingTools();
if (missing && process.env.CI) throw new Error(`CI must run the notebook tests, but ${missing}`);
if (missing) console.warn(`[skipping notebook tests] ${missing}`);

// ---------------------------------------------------------------- running notebooks

interface Output {
  output_type: 'stream' | 'execute_result' | 'display_data' | 'error';
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
  ename?: string;
  evalue?: string;
}
interface Cell {
  cell_type: 'code' | 'markdown' | 'raw';
  source: string | string[];
  outputs?: Output[];
}
interface Executed {
  code: number;
  stderr: string;
  /** The code cells of the executed notebook, each with its outputs as text. */
  cells: { source: string; outputs: Output[]; text: string }[];
  /** Every output of every cell, in order. */
  text: string;
}

const joined = (s: string | string[] | undefined) => (Array.isArray(s) ? s.join('') : (s ?? ''));

function outputText(o: Output): string {
  if (o.output_type === 'stream') return joined(o.text);
  if (o.output_type === 'error') return `${o.ename}: ${o.evalue}\n`;
  return `${joined(o.data?.['text/plain'])}\n`;
}

/**
 * `jupyter nbconvert --to notebook --execute <notebook>` with the repository's
 * Jupyter setup and nothing from the home directory: the kernel spec and
 * nbconvert config from examples/jupyter, Jupyter's own config, data and
 * runtime (connection files) in a temporary directory, Deno's cache in
 * node_modules/.cache. The kernel inherits `env`.
 */
async function executeNotebook(notebook: string, env: NodeJS.ProcessEnv = {}): Promise<Executed> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'pedigree-nbconvert-'));
  try {
    const base: NodeJS.ProcessEnv = { ...process.env };
    for (const name of ['PEDIGREE_URL', 'PEDIGREE_API_KEY', 'JUPYTER_PATH', 'JUPYTER_CONFIG_PATH', 'JUPYTER_PREFER_ENV_PATH']) delete base[name];
    const fullEnv: NodeJS.ProcessEnv = {
      ...base,
      JUPYTER_PATH: JUPYTER_DIR,
      JUPYTER_CONFIG_PATH: JUPYTER_DIR,
      JUPYTER_CONFIG_DIR: path.join(scratch, 'config'),
      JUPYTER_DATA_DIR: path.join(scratch, 'data'),
      JUPYTER_RUNTIME_DIR: path.join(scratch, 'runtime'),
      DENO_DIR: path.join(root, 'node_modules', '.cache', 'deno'),
      DENO_NO_UPDATE_CHECK: '1',
      NO_COLOR: '1',
      PYDEVD_DISABLE_FILE_VALIDATION: '1', // quiets a debugger warning of Debian's Python
      ...env,
    };
    const args = ['nbconvert', '--to', 'notebook', '--execute', notebook, '--output-dir', scratch, '--output', 'executed'];
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile('jupyter', args, { cwd: root, env: fullEnv, timeout: NBCONVERT_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
      });
    });
    let nbCells: Cell[] = [];
    try {
      nbCells = (JSON.parse(readFileSync(path.join(scratch, 'executed.ipynb'), 'utf8')) as { cells: Cell[] }).cells;
    } catch {
      // nbconvert failed before it wrote anything: `stderr` says why
    }
    const cells = nbCells
      .filter((c) => c.cell_type === 'code')
      .map((c) => {
        const outputs = c.outputs ?? [];
        return { source: joined(c.source), outputs, text: outputs.map(outputText).join('') };
      });
    return { code, stderr, cells, text: cells.map((c) => c.text).join('') };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function writeNotebook(file: string, sources: string[]): void {
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'deno', display_name: 'Deno', language: 'typescript' } },
    cells: sources.map((source, i) => ({ cell_type: 'code', id: `cell-${i}`, metadata: {}, execution_count: null, outputs: [], source })),
  };
  writeFileSync(file, JSON.stringify(nb, null, 1));
}

// ---------------------------------------------------------------- the plumbing

describe.skipIf(missing)('Deno kernel under nbconvert', () => {
  let dir: string;
  let result: Executed;

  beforeAll(async () => {
    // In examples/, like the real notebooks: Deno finds the workspace from the notebook's directory up.
    dir = mkdtempSync(path.join(EXAMPLES, '.notebook-test-'));
    const relative = path.relative(dir, path.join(root, 'packages/ledger/src/index.ts'));
    writeNotebook(path.join(dir, 'plumbing.ipynb'), [
      'console.log(`deno ${Deno.version.deno} in ${Deno.cwd()}`);',
      "import { canonicalJson } from '@pedigree/ledger';\nconsole.log(`bare: ${canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] })}`);",
      `import { sha256Hex } from '${relative}';\nconsole.log(\`relative: \${sha256Hex('pedigree')}\`);`,
      "import { connect, Run } from '@pedigree/client';\nconsole.log(`client: ${typeof connect} ${typeof Run}`);",
      "'the value of the last expression'",
    ]);
    result = await executeNotebook(path.join(dir, 'plumbing.ipynb'));
  }, SETUP_TIMEOUT_MS);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts the repository kernel and runs every cell', () => {
    expect(result.code, result.stderr).toBe(0);
    expect(result.cells).toHaveLength(5);
    expect(result.text).not.toMatch(/Error/);
    expect(result.cells[0]!.text).toBe(`deno ${denoVersion()} in ${dir}\n`);
  });

  it('imports workspace packages by name and by relative path, from the TypeScript sources', () => {
    expect(result.cells[1]!.text).toBe('bare: {"a":[2,{"c":4,"d":3}],"b":1}\n');
    expect(result.cells[2]!.text).toMatch(/^relative: [0-9a-f]{64}\n$/);
    expect(result.cells[3]!.text).toBe('client: function function\n');
  });

  it('keeps every output, the last expression value included', () => {
    // Deno's kernel can send a cell's output just after it reports the cell done;
    // examples/jupyter/jupyter_nbconvert_config.py makes nbconvert wait for it.
    expect(result.cells.map((c) => c.outputs.length)).toEqual([1, 1, 1, 1, 1]);
    expect(result.cells[4]!.text).toBe('"the value of the last expression"\n');
  });

  it('downloads nothing (npm packages come from node_modules)', () => {
    expect(result.stderr).not.toMatch(/Download/);
  });
});

function denoVersion(): string {
  const out = spawnSync(DENO, ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return /^deno (\S+)/.exec(out)?.[1] ?? '?';
}

// ---------------------------------------------------------------- the quickstart

describe.skipIf(missing)('examples/quickstart.ipynb type-checks', () => {
  // The kernel runs cells without type-checking them: `deno check` on the cells, in order,
  // catches a notebook that no longer matches the client's API.
  it('deno check passes on its code cells, against the workspace sources', () => {
    const nb = JSON.parse(readFileSync(path.join(EXAMPLES, 'quickstart.ipynb'), 'utf8')) as { cells: Cell[] };
    const code = nb.cells.filter((c) => c.cell_type === 'code').map((c) => joined(c.source));
    const dir = mkdtempSync(path.join(EXAMPLES, '.notebook-test-'));
    try {
      writeFileSync(path.join(dir, 'quickstart.ts'), `${code.join('\n\n')}\n`);
      const check = spawnSync(DENO, ['check', 'quickstart.ts'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: NBCONVERT_TIMEOUT_MS,
        env: { ...process.env, DENO_DIR: path.join(root, 'node_modules', '.cache', 'deno'), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
      });
      expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
      expect(check.stderr).not.toMatch(/Download/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The loss curve examples/quickstart.ipynb logs. */
const quickstartLoss = (step: number) => 0.35 + 2.0 * Math.exp(-step / 50) + 0.03 * Math.sin(step * 1.7);

describe.skipIf(missing)('examples/quickstart.ipynb against `pedigree start`', () => {
  let home: string;
  let server: PedigreeServer;
  let apiKey: string;
  let result: Executed;
  let timing = '';

  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-notebook-'));
    const created = await pedigreeCommand(['projects', 'create', 'quickstart', '--home', home]);
    expect(created.code, created.stderr).toBe(0);
    const key = await pedigreeCommand(['keys', 'create', '--project', 'quickstart', '--name', 'notebook-test', '--json', '--home', home]);
    expect(key.code, key.stderr).toBe(0);
    apiKey = (JSON.parse(key.stdout) as { key: string }).key;
    server = await pedigreeServer({ home, auth: 'keys' });
    await server.start();
    const started = Date.now();
    result = await executeNotebook(path.join(EXAMPLES, 'quickstart.ipynb'), { PEDIGREE_URL: server.url, PEDIGREE_API_KEY: apiKey });
    timing = `nbconvert ran the quickstart in ${((Date.now() - started) / 1000).toFixed(1)} s`;
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    if (server?.pid) await server.stop().catch(() => server.kill());
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('runs every cell without an error', () => {
    console.log(timing);
    expect(result.code, `${result.stderr}\n${result.text}`).toBe(0);
    expect(result.cells.length).toBeGreaterThanOrEqual(8);
    expect(result.cells.flatMap((c) => c.outputs).filter((o) => o.output_type === 'error')).toEqual([]);
    for (const cell of result.cells) expect(cell.text, `no output from:\n${cell.source}`).not.toBe('');
  });

  it('prints the run, its points, its read-back and its lineage', () => {
    const out = result.text;
    expect(out).toContain(`connected to ${server.url} with an API key\n`);
    expect(out).toMatch(/^run tiny-pretrain \([0-9a-f-]{36}\): logged 400 points$/m);
    expect(out).toMatch(/^checkpoint [0-9a-f-]{36} \(sha256:[0-9a-f]{12}…\)$/m);
    expect(out).toContain('run tiny-pretrain: completed\n');
    expect(out).toContain('hyperparameters: {"lr":0.0003,"steps":200,"warmup":20,"batchSize":32}\n');
    expect(out).toContain('summary: {"evals":1,"points":400,"checkpoints":1}\n');
    expect(out).toContain(`loss: 200 points, ${quickstartLoss(0).toFixed(3)} at step 0 -> ${quickstartLoss(199).toFixed(3)} at step 199\n`);
    expect(out).toMatch(/^[▁▂▃▄▅▆▇█]{40}$/m);
    expect(out).toMatch(/^run tiny-sft \([0-9a-f-]{36}\): 20 points, finished$/m);

    const lineage = out.slice(out.indexOf('Lineage of tiny-sft')).split('\n').slice(0, 5);
    expect(lineage[0]).toBe('Lineage of tiny-sft');
    expect(lineage[1]).toBe('tiny-sft [sft run, completed]');
    expect(lineage[2]).toMatch(/^└─ init: \S+ \[checkpoint\]$/);
    expect(lineage[3]).toBe('   └─ produced by tiny-pretrain [pretrain run, completed]');
    expect(lineage[4]).toBe('      └─ train-mix: tiny-corpus [dataset]');
    expect(out).toMatch(/closed\n$/);
  });

  it('recorded the runs in the store (read through the server)', async () => {
    const pd = await connect({ url: server.url, apiKey, handleSignals: false });
    try {
      const { runs } = await pd.runs({ project: 'quickstart' });
      expect(runs.map((r) => `${r.name} ${r.kind} ${r.status}`).sort()).toEqual(['tiny-pretrain pretrain completed', 'tiny-sft sft completed']);
      const pretrainId = /^run tiny-pretrain \(([0-9a-f-]{36})\)/m.exec(result.text)![1]!;
      const sftId = /^run tiny-sft \(([0-9a-f-]{36})\)/m.exec(result.text)![1]!;
      expect(runs.map((r) => r.id).sort()).toEqual([pretrainId, sftId].sort());

      const pretrain = await pd.run(pretrainId);
      expect(pretrain.hyperparameters).toEqual({ lr: 3e-4, warmup: 20, steps: 200, batchSize: 32 });
      expect(pretrain.summary).toEqual({ points: 400, checkpoints: 1, evals: 1 });
      expect(pretrain.environment).toMatchObject({ runtime: `deno ${denoVersion()}` });

      const loss = await pd.metrics(pretrainId, 'loss');
      expect(loss.map((p) => p.step)).toEqual(Array.from({ length: 200 }, (_, s) => s));
      loss.forEach((p) => expect(p.value).toBeCloseTo(quickstartLoss(p.step), 12));
      const lr = await pd.metrics(pretrainId, 'lr');
      expect(lr).toHaveLength(200);
      expect(lr[19]!.value).toBeCloseTo(3e-4, 12); // the end of the warmup
      expect(await pd.evals(pretrainId)).toMatchObject([{ suite: 'recall', task: 'kv', score: 0.9, step: 199 }]);

      const sft = await pd.run(sftId);
      expect(sft.summary).toMatchObject({ points: 20 });
      const graph = await pd.lineage(sftId);
      expect(graph.root).toBe(sftId);
      expect(graph.nodes.map((n) => `${n.type} ${n.kind} ${n.name}`)).toEqual(
        expect.arrayContaining(['artifact dataset tiny-corpus', 'run pretrain tiny-pretrain', 'run sft tiny-sft']),
      );
      const checkpoint = graph.nodes.find((n) => n.type === 'artifact' && n.kind === 'checkpoint')!;
      expect(graph.edges).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ from: checkpoint.id, to: sftId, relation: 'used', role: 'init' }),
          expect.objectContaining({ from: pretrainId, to: checkpoint.id, relation: 'produced' }),
        ]),
      );
    } finally {
      await pd.close();
    }
  });
});
