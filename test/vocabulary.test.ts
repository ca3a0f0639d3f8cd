import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as api from '@pedigree/api';
import type { ArtifactInput, RunKind as ClientRunKind } from '@pedigree/client';
import { ARTIFACT_KINDS, NON_FINITE, RUN_KINDS, type RunKind } from '@pedigree/ledger';
import * as ledger from '@pedigree/ledger';
import { describe, expect, expectTypeOf, it } from 'vitest';

/**
 * One vocabulary (issue 16): run kinds, artifact kinds, the data-filter
 * schema, the data-mix weight tolerance and the spelling of NaN/±Infinity are
 * defined once, in packages/ledger/src/vocabulary.ts, and the limits on what
 * events hold (MAX_*) there or beside their schemas in events.ts; they are
 * imported everywhere else; the API's input and output types are inferred once, in
 * packages/api. This reads the product's sources (packages/NAME/src and
 * apps/web/app, tests left out: they may spell out what they expect) and
 * fails, naming the file, where a copy of one comes back.
 *
 * How we tried to break it (each failed as shown, then we reverted it):
 *  - `const KINDS = ['pretrain', 'midtrain', 'sft', …]` put back in
 *    apps/web/app/_components/RunsPage.tsx → run kinds: "apps/web/app/_components/RunsPage.tsx:
 *    'pretrain', 'midtrain', 'sft', 'dpo', 'pts', 'eval', 'data', 'custom'";
 *  - `const WEIGHT_TOLERANCE = 1e-6` in packages/trainer/src/config.ts →
 *    weight tolerance: "packages/trainer/src/config.ts";
 *  - api/src/watch.ts's old `NON_FINITE` map (`{ NaN: …, '-Infinity': … }`) →
 *    non-finite spellings: "packages/api/src/watch.ts";
 *  - a note's `text: z.string().min(1).max(10_000)` put back in
 *    packages/api/src/routers/runs.ts → "packages/api/src/routers/runs.ts:165:
 *    .max(10_000) is MAX_NOTE or MAX_ERROR" (the runs router as it was before
 *    the limits were imported: 18 such lines).
 */

const root = path.resolve(import.meta.dirname, '..');
const LEDGER = 'packages/ledger/src/';

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((d) => {
    const rel = `${dir}/${d.name}`;
    if (d.isDirectory()) return d.name === 'node_modules' || d.name === 'generated' ? [] : sourceFiles(rel);
    return /\.tsx?$/.test(d.name) && !/\.test\.tsx?$/.test(d.name) ? [rel] : [];
  });
}

const sources = [...readdirSync(path.join(root, 'packages')).map((p) => `packages/${p}/src`), 'apps/web/app'].flatMap(sourceFiles).map((file) => ({ file, text: readFileSync(path.join(root, file), 'utf8') }));

/** Every literal list of quoted words (`['a', 'b']`, `'a' | 'b'`) of at least `min` of `words`, outside the ledger. */
function listsOf(words: readonly string[], min: number): string[] {
  const found: string[] = [];
  for (const { file, text } of sources) {
    if (file.startsWith(LEDGER)) continue;
    for (const m of text.matchAll(/(['"])[\w-]+\1(?:\s*[,|]\s*(['"])[\w-]+\2)+/g)) {
      const listed = [...m[0].matchAll(/['"]([\w-]+)['"]/g)].map((w) => w[1]!);
      if (new Set(listed.filter((w) => words.includes(w))).size >= min) found.push(`${file}: ${m[0]}`);
    }
  }
  return found;
}

/** Files outside the ledger whose text matches `pattern`. */
const filesMatching = (pattern: RegExp, except: (file: string) => boolean = (f) => f.startsWith(LEDGER)) =>
  sources.filter(({ file, text }) => !except(file) && pattern.test(text)).map(({ file }) => file);

describe('one vocabulary, defined in the ledger', () => {
  it('sees the sources it checks', () => {
    expect(sources.some((s) => s.file === 'packages/ledger/src/vocabulary.ts')).toBe(true);
    expect(sources.some((s) => s.file === 'apps/web/app/_components/RunsPage.tsx')).toBe(true);
    // the scan finds the one definition it allows
    const events = sources.find((s) => s.file === 'packages/ledger/src/vocabulary.ts')!.text;
    expect(events).toContain(`['${RUN_KINDS.join("', '")}']`);
  });

  it('run kinds and artifact kinds are listed nowhere else', () => {
    expect(listsOf(RUN_KINDS, 3), 'run kinds').toEqual([]);
    expect(listsOf(ARTIFACT_KINDS, 3), 'artifact kinds').toEqual([]);
  });

  it('NaN and ±Infinity are spelled out nowhere else', () => {
    expect(listsOf(NON_FINITE, 2), 'non-finite spellings').toEqual([]);
    expect(filesMatching(/['"]-Infinity['"]/), 'non-finite spellings').toEqual([]);
  });

  it('the data-filter schema and the weight tolerance are defined nowhere else', () => {
    expect(filesMatching(/minTokens\s*:\s*(z\.|int\()/), 'data-filter schema').toEqual([]);
    expect(filesMatching(/WEIGHT_TOLERANCE\s*=|Math\.abs\([^)]*-\s*1\)\s*>\s*[\d.]/), 'weight tolerance').toEqual([]);
  });

  it('the API types are inferred in the API only', () => {
    expect(filesMatching(/infer(Router|Procedure)(Inputs|Outputs|Input|Output)\b/, (f) => f.startsWith('packages/api/src/')), 'inferred router types').toEqual([]);
  });

  it('the dashboard lists the ledger’s kinds, handed down from the server through the API', () => {
    expect(api.RUN_KINDS).toBe(RUN_KINDS);
    expect(api.ARTIFACT_KINDS).toBe(ARTIFACT_KINDS);
    const home = readFileSync(path.join(root, 'apps/web/app/page.tsx'), 'utf8');
    expect(home).toMatch(/import \{ RUN_KINDS \} from '@pedigree\/api'/);
    expect(home).toContain('<RunsPage kinds={RUN_KINDS} />');
    const artifacts = readFileSync(path.join(root, 'apps/web/app/artifacts/page.tsx'), 'utf8');
    expect(artifacts).toMatch(/import \{ ARTIFACT_KINDS \} from '@pedigree\/api'/);
  });

  it('the client’s public types are the API’s (checked by the typecheck)', () => {
    expectTypeOf<ClientRunKind>().toEqualTypeOf<RunKind>();
    expectTypeOf<ArtifactInput['spec']['kind']>().toEqualTypeOf<(typeof ARTIFACT_KINDS)[number]>();
  });
});

describe('limits, defined once in the ledger', () => {
  /** Every number the ledger exports as MAX_*: the lengths and counts its events hold to. */
  const limits = Object.entries(ledger).filter((e): e is [string, number] => e[0].startsWith('MAX_') && typeof e[1] === 'number');

  /**
   * Each literal `.max(N)` in `text` where N is one of the ledger's limits,
   * as `line: .max(N) is MAX_…`. A bound on a `z.number()` chain is left out:
   * it bounds a value (a page size, a bucket count), which none of the ledger's
   * lengths and counts is, even where the number is the same.
   */
  function retypedLimits(text: string): string[] {
    const found: string[] = [];
    for (const m of text.matchAll(/\.max\(\s*(\d[\d_]*(?:\.\d+)?(?:e\d+)?)\s*[,)]/g)) {
      if (/z\.number\(\)(?:\.\w+\([^()]*\))*$/.test(text.slice(Math.max(0, m.index - 200), m.index))) continue;
      const value = Number(m[1]!.replaceAll('_', ''));
      const names = limits.filter(([, v]) => v === value).map(([name]) => name);
      if (names.length) found.push(`${text.slice(0, m.index).split('\n').length}: .max(${m[1]}) is ${names.join(' or ')}`);
    }
    return found;
  }

  it('tells a re-typed limit from a bound of its own', () => {
    expect(limits.map(([name]) => name)).toEqual(expect.arrayContaining(['MAX_NAME', 'MAX_KEY', 'MAX_TAG_VALUE', 'MAX_NOTE', 'MAX_ERROR', 'MAX_POINTS_PER_BATCH']));
    expect(retypedLimits(`z.string().min(1).max(200)`)).toEqual(['1: .max(200) is MAX_NAME']);
    expect(retypedLimits(`z.array(z.number().int()).max(50_000, 'split it')`)).toEqual(['1: .max(50_000) is MAX_POINTS_PER_BATCH']);
    expect(retypedLimits(`z.number().int().min(1).max(10_000)`)).toEqual([]);
    expect(retypedLimits(`z.string().max(MAX_NAME).max(16)`)).toEqual([]);
  });

  it('the API’s input schemas import the ledger’s limits rather than re-type them', () => {
    const found = sources.filter(({ file }) => file.startsWith('packages/api/src/')).flatMap(({ file, text }) => retypedLimits(text).map((hit) => `${file}:${hit}`));
    expect(found, 'import the limit from @pedigree/ledger (or name a bound of the API’s own)').toEqual([]);
  });
});

describe('environment, read in one module per package', () => {
  /**
   * Where process.env may be read: each package's env module, and what is
   * not ours to move: DISPLAY (the X server's; startVirtualDisplay sets it)
   * and CI in the trainer's kernels; in the CLI, what `pedigree start` hands
   * on (NODE_ENV for the web server it runs in-process, the whole environment
   * to the demo's child process) and the terminal's own (NO_COLOR, COLUMNS).
   */
  const allowed = (file: string) =>
    /^packages\/[^/]+\/src\/env\.ts$/.test(file) ||
    file === 'packages/trainer/src/kernels/backend.ts' ||
    file === 'packages/trainer/src/kernels/testing.ts' ||
    file === 'packages/cli/src/server.ts' ||
    file === 'packages/cli/src/commands/start.ts' ||
    file === 'packages/cli/src/terminal.ts';

  it('no library reads process.env outside its env module', () => {
    expect(filesMatching(/process\.env\b/, allowed)).toEqual([]);
    const backend = sources.find((s) => s.file === 'packages/trainer/src/kernels/backend.ts')!.text;
    expect([...backend.matchAll(/process\.env\.(\w+)/g)].map((m) => m[1]).filter((v) => v !== 'DISPLAY')).toEqual([]);
  });
});
