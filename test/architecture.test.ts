import { readdirSync } from 'node:fs';
import path from 'node:path';
import { cruise, type ICruiseOptions, type ICruiseResult, type IForbiddenRuleType } from 'dependency-cruiser';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * The architecture as a test (docs/architecture.md, "The layers"):
 * dependency-cruiser reads every import in each packages/NAME/src and in
 * apps/web/app, and this fails with the list of imports that break one of
 * three rules:
 *
 *  1. No import cycle, inside a package or across packages, type-only
 *     imports included: a cycle closed only by `import type` cannot leave a
 *     module half-loaded at run time, but it still says two modules cannot be
 *     read apart (the last ones, api mlflow/artifacts ↔ tracking, client
 *     index ↔ run, ledger chunks ↔ events, lineage diff ↔ queries and
 *     index ↔ sample, trainer config ↔ data, were broken when this became
 *     strict).
 *  2. A package imports only the packages of its row in ALLOWED, type-only
 *     imports included: a type is an arrow too.
 *  3. Inside packages/trainer, a room imports only the rooms below it
 *     (TRAINER_ROOMS).
 *
 * How we tried to break it (each failed as shown, then we reverted it):
 *  - a file packages/db/src/zz-architecture-probe.ts holding
 *    `import type { Pedigree } from '@pedigree/lineage'` →
 *    "db → lineage: packages/db/src/zz-architecture-probe.ts imports
 *    packages/lineage/src/index.ts (db may import: nothing)" (a type-only arrow
 *    is still an arrow), and no cycle reported for it;
 *  - `import { runRecipe } from '../recipe/recipe.ts'`, used, in
 *    packages/trainer/src/stages/posttrain.ts (the cycle this test was written
 *    after) → "import cycle (2 files): packages/trainer/src/recipe/recipe.ts →
 *    packages/trainer/src/stages/posttrain.ts → packages/trainer/src/recipe/recipe.ts"
 *    and "… (trainer rooms: stages may not import recipe)".
 */

const root = path.resolve(import.meta.dirname, '..');

/**
 * Who may import whom: ledger ← lineage ← api ← client/web, the trainer through
 * the client. `ledger/vocabulary`: only packages/ledger/src/vocabulary.ts (the
 * kinds, the data-filter schema, the weight tolerance, NaN/±Infinity), free of
 * the store, which the client re-exports so that the trainer's configs are
 * written in the ledger's words without loading the database code.
 * `ledger/packed`: only packages/ledger/src/packed.ts, the columnar wire form
 * of a metric batch, which the client packs and the API unpacks.
 */
const ALLOWED: Record<string, readonly string[]> = {
  db: [],
  ledger: ['db'],
  lineage: ['ledger', 'db'],
  api: ['lineage', 'ledger', 'db'],
  // AppRouter's types; its embedded mode runs api in-process on a store it opens through lineage
  client: ['api', 'lineage', 'ledger/vocabulary', 'ledger/packed'],
  // reports through the client like any other user (the ledger's vocabulary too, re-exported by it)
  trainer: ['client'],
  // user commands go through the client; operator commands (start, migrate, replay, verify, keys) hold a store
  cli: ['client', 'trainer', 'api', 'lineage', 'ledger', 'db'],
  // reads only through the API
  web: ['api'],
};

/** packages/trainer/src's rooms, lowest first; the files at src/ itself (config, rng) are shared by all. */
const TRAINER_ROOMS = ['kernels', 'data', 'model', 'stages', 'recipe'] as const;

const dirOf = (pkg: string) => (pkg === 'web' ? 'apps/web/' : pkg.startsWith('ledger/') ? `packages/ledger/src/${pkg.slice('ledger/'.length)}\\.ts$` : `packages/${pkg}/`);
const packageOf = (file: string) => (file.startsWith('apps/web/') ? 'web' : /^packages\/([^/]+)\//.exec(file)?.[1]);
const alternatives = (items: readonly string[]) => `(${items.join('|')})`;

const arrowRules: IForbiddenRuleType[] = Object.entries(ALLOWED).map(([pkg, allowed]) => ({
  name: `${pkg} may import: ${allowed.join(', ') || 'nothing'}`,
  severity: 'error',
  from: { path: `^${dirOf(pkg)}` },
  to: { path: '^(packages|apps)/[^/]+/', pathNot: `^${alternatives([pkg, ...allowed].map(dirOf))}` },
}));

const roomRules: IForbiddenRuleType[] = TRAINER_ROOMS.slice(0, -1).map((room, i) => ({
  name: `trainer rooms: ${room} may not import ${TRAINER_ROOMS.slice(i + 1).join(', ')}`,
  severity: 'error',
  from: { path: `^packages/trainer/src/${room}/` },
  to: { path: `^packages/trainer/src/${alternatives(TRAINER_ROOMS.slice(i + 1))}/` },
}));

/** One cruise of the tree: every import, type-only ones included (marked 'type-only'). */
async function cruiseTree(): Promise<ICruiseResult> {
  const options: ICruiseOptions = {
    baseDir: root,
    // @pedigree/* too, so that one it cannot resolve stays in sight (resolved ones become packages/*/src paths)
    includeOnly: '^((packages/[^/]+/src|apps/web/app)/|@pedigree/)',
    exclude: { path: '(^|/)(node_modules|generated)/' },
    doNotFollow: { path: 'node_modules' },
    // dependency-cruiser ignores package.json "exports" unless told to (it reads "main", which ours lack)
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'default'] },
    tsPreCompilationDeps: true,
    validate: true,
    ruleSet: { forbidden: [...arrowRules, ...roomRules] },
  };
  const { output } = await cruise(['packages', 'apps/web/app'], options);
  if (typeof output === 'string') throw new Error(`dependency-cruiser returned text: ${output.slice(0, 200)}`);
  return output;
}

/**
 * Every import cycle, one line each: the strongly connected components of
 * the import graph (Tarjan), each shown as one loop through it. Not
 * dependency-cruiser's own `circular` rule: it attaches one cycle to each
 * import, so a second loop through the same import can go unreported.
 */
function importCycles(result: ICruiseResult): string[] {
  const edges = new Map<string, string[]>();
  for (const m of result.modules) {
    edges.set(m.source, m.dependencies.filter((d) => !d.couldNotResolve).map((d) => d.resolved));
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || edges.get(v)?.includes(v)) components.push(component);
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) visit(v);
  return components.map((component) => {
    // a shortest loop from the component's first file back to itself, breadth first inside the component
    const members = new Set(component);
    const start = [...component].sort()[0]!;
    const parent = new Map<string, string>();
    const queue = [start];
    while (queue.length) {
      const v = queue.shift()!;
      const next = (edges.get(v) ?? []).filter((w) => members.has(w));
      if (next.includes(start)) {
        const loop = [v];
        while (loop[0] !== start) loop.unshift(parent.get(loop[0]!)!);
        return `import cycle (${component.length} files): ${[...loop, start].join(' → ')}`;
      }
      for (const w of next) {
        if (parent.has(w) || w === start) continue;
        parent.set(w, v);
        queue.push(w);
      }
    }
    return `import cycle: ${component.join(', ')}`;
  });
}

function describeViolations(result: ICruiseResult): string[] {
  return result.summary.violations.map((v) => `${v.rule.name.startsWith('trainer rooms') ? '' : `${packageOf(v.from)} → ${packageOf(v.to)}: `}${v.from} imports ${v.to} (${v.rule.name})`);
}

describe('architecture', () => {
  let tree: ICruiseResult;
  beforeAll(async () => {
    tree = await cruiseTree();
  });

  it('every package has a row in the allowed-arrows table', () => {
    const packages = [...readdirSync(path.join(root, 'packages')), ...readdirSync(path.join(root, 'apps'))];
    expect(packages.filter((p) => !(p in ALLOWED))).toEqual([]);
  });

  it('sees every workspace import', () => {
    const unresolved = tree.modules.flatMap((m) => m.dependencies.filter((d) => d.couldNotResolve).map((d) => `${m.source} imports ${d.module}`));
    expect(unresolved, 'imports dependency-cruiser could not resolve (their arrows would go unseen)').toEqual([]);
    // the store's first arrow must be seen, or the checks below would pass for want of looking
    expect(tree.modules.some((m) => m.source.startsWith('packages/ledger/') && m.dependencies.some((d) => d.resolved.startsWith('packages/db/')))).toBe(true);
  });

  it('has no import cycle, type-only imports included', () => {
    expect(importCycles(tree)).toEqual([]);
  });

  it('imports go only along the allowed arrows, and the trainer rooms downwards', () => {
    expect(describeViolations(tree)).toEqual([]);
  });
});
