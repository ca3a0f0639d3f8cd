import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * One read path per projection table (docs/how-it-works.md, "One read path
 * per read-model table"; issue 16):
 * a table is read either in SQL or through Prisma, never both, and only in
 * the module named for it. The tables the commands check inside their append
 * transactions are read in SQL by packages/lineage/src/reader.ts, which both
 * the commands and `Lineage` use; metric_series in SQL, there and in
 * buckets.ts (a chart reads it with its chunks, inside its own snapshot); the
 * tables only `Lineage` reads, through Prisma, in queries.ts.
 *
 * What it reads: every .ts/.tsx file under packages/NAME/src and apps/web,
 * tests and generated code left out. A SQL read is `FROM table` or
 * `JOIN table` (any case, `"public".` and quotes allowed, `DELETE FROM` is a
 * write) in a string or template literal; a Prisma read is
 * `….<model>.<read method>(…)`. It cannot see SQL built from pieces (a table
 * name in a `${…}`, or split across literals), nor a Prisma delegate held in a
 * variable.
 *
 * How we tried to break it (each failed as shown, then we reverted it):
 *  - `await this.db.query('SELECT id FROM runs WHERE id = $1', [runId])` in
 *    `Lineage.run` (queries.ts) → "runs: read in SQL in
 *    packages/lineage/src/queries.ts:…, but its one read path is SQL in
 *    packages/lineage/src/reader.ts";
 *  - `this.prisma.edge.findMany({ where: { runId } })` in `Lineage.edgesOf` →
 *    "edges: read through Prisma (edge.findMany) in
 *    packages/lineage/src/queries.ts:…, but its one read path is SQL in
 *    packages/lineage/src/reader.ts";
 *  - packages/api/src/keys.ts as it was (`SELECT 1 FROM projects WHERE id =
 *    $1` to check a key's project) → "projects: read in SQL in
 *    packages/api/src/keys.ts:55, but its one read path is SQL in
 *    packages/lineage/src/reader.ts".
 * The last test below plants such reads in memory, so the scanner cannot go
 * blind without this failing.
 */

const root = path.resolve(import.meta.dirname, '..');
const READER = 'packages/lineage/src/reader.ts';
const QUERIES = 'packages/lineage/src/queries.ts';
const BUCKETS = 'packages/lineage/src/buckets.ts';

/** How a table is read, and the modules that may (one, but for the metric series). */
type ReadPath = { via: 'sql' | 'prisma'; in: readonly string[] };

/** Each projection table's one read path. */
const READ_PATHS: Record<string, ReadPath> = {
  projects: { via: 'sql', in: [READER] },
  runs: { via: 'sql', in: [READER] },
  artifacts: { via: 'sql', in: [READER] },
  edges: { via: 'sql', in: [READER] },
  // a chart's buckets read the series with its chunks in one round trip
  metric_series: { via: 'sql', in: [READER, BUCKETS] },
  hyperparameters: { via: 'prisma', in: [QUERIES] },
  datamix_components: { via: 'prisma', in: [QUERIES] },
  evals: { via: 'prisma', in: [QUERIES] },
  notes: { via: 'prisma', in: [QUERIES] },
  run_files: { via: 'prisma', in: [QUERIES] },
};

/** Not projections: the ledger's events, their ids and the metric chunks that are part of them, and the API's keys. */
const NOT_PROJECTIONS = ['events', 'event_ids', 'metric_chunks', 'api_keys'];

/** Prisma's read methods on a model delegate. */
const PRISMA_READS = new Set(['findMany', 'findUnique', 'findUniqueOrThrow', 'findFirst', 'findFirstOrThrow', 'count', 'aggregate', 'groupBy']);

/** Table name → Prisma delegate name (`runs` → `run`), from prisma/schema.prisma. */
function schemaTables(): Map<string, string> {
  const schema = readFileSync(path.join(root, 'prisma/schema.prisma'), 'utf8');
  const tables = new Map<string, string>();
  for (const m of schema.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const table = /@@map\("([^"]+)"\)/.exec(m[2]!)?.[1] ?? m[1]!;
    tables.set(table, m[1]![0]!.toLowerCase() + m[1]!.slice(1));
  }
  return tables;
}

interface Read {
  table: string;
  via: 'sql' | 'prisma';
  file: string;
  line: number;
  what: string;
}

const SQL_READ = /(?<!\bDELETE\s+)\b(?:FROM|JOIN)\s+(?:"?public"?\s*\.\s*)?"?([a-z_][a-z0-9_]*)"?/gi;

/** The reads of known tables in one source file. */
function readsIn(file: string, text: string, tables: Map<string, string>): Read[] {
  const byDelegate = new Map([...tables].map(([table, delegate]) => [delegate, table]));
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const reads: Read[] = [];
  const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  const visit = (node: ts.Node) => {
    let literal: string | undefined;
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) literal = node.text;
    else if (ts.isTemplateExpression(node)) literal = [node.head.text, ...node.templateSpans.map((s) => s.literal.text)].join(' ${…} ');
    if (literal !== undefined) {
      for (const m of literal.matchAll(SQL_READ)) {
        const table = m[1]!.toLowerCase();
        if (tables.has(table)) reads.push({ table, via: 'sql', file, line: lineOf(node), what: m[0] });
      }
    }
    // ….<delegate>.<method>(…)
    if (ts.isPropertyAccessExpression(node) && PRISMA_READS.has(node.name.text) && ts.isPropertyAccessExpression(node.expression)) {
      const table = byDelegate.get(node.expression.name.text);
      if (table) reads.push({ table, via: 'prisma', file, line: lineOf(node), what: `${node.expression.name.text}.${node.name.text}` });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return reads;
}

/** A read that is not its table's one path, as a line; null when it is. */
function offPath(read: Read): string | null {
  if (NOT_PROJECTIONS.includes(read.table)) return null;
  const where = `${read.file}:${read.line}`;
  const path = READ_PATHS[read.table];
  if (!path) return `${read.table}: read in ${where}, but the table has no read path in READ_PATHS`;
  if (path.via === read.via && path.in.includes(read.file)) return null;
  const how = read.via === 'sql' ? 'in SQL' : `through Prisma (${read.what})`;
  return `${read.table}: read ${how} in ${where}, but its one read path is ${path.via === 'sql' ? 'SQL' : 'Prisma'} in ${path.in.join(', ')}`;
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!['node_modules', 'generated', '.next'].includes(entry.name)) walk(rel);
      } else if (/\.(ts|tsx|mts)$/.test(entry.name) && !/\.test\.tsx?$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(rel);
    }
  };
  for (const pkg of readdirSync(path.join(root, 'packages'))) walk(`packages/${pkg}/src`);
  walk('apps/web');
  return out;
}

describe('read paths', () => {
  const tables = schemaTables();
  const reads = sourceFiles().flatMap((file) => readsIn(file, readFileSync(path.join(root, file), 'utf8'), tables));

  it('gives every table in the schema a read path, or says it is not a projection', () => {
    expect([...tables.keys()].filter((t) => !(t in READ_PATHS) && !NOT_PROJECTIONS.includes(t))).toEqual([]);
    expect([...Object.keys(READ_PATHS), ...NOT_PROJECTIONS].filter((t) => !tables.has(t))).toEqual([]);
  });

  it('reads every projection table by its one path only', () => {
    expect(reads.map(offPath).filter((line) => line !== null)).toEqual([]);
  });

  it('sees each table read by its path (so the scan is not blind)', () => {
    const unseen = Object.entries(READ_PATHS)
      .filter(([table, p]) => !reads.some((r) => r.table === table && r.via === p.via && p.in.includes(r.file)))
      .map(([table, p]) => `${table}: no ${p.via} read found in ${p.in.join(', ')}`);
    expect(unseen).toEqual([]);
  });

  it('catches planted reads off the path', () => {
    const planted = (file: string, text: string) => readsIn(file, text, tables).map(offPath);
    expect(planted(QUERIES, `await this.db.query('SELECT id FROM runs WHERE id = $1', [id]);`)).toEqual([
      `runs: read in SQL in ${QUERIES}:1, but its one read path is SQL in ${READER}`,
    ]);
    expect(planted(QUERIES, 'const rows = await this.prisma.edge.findMany({ where: { runId } });')).toEqual([
      `edges: read through Prisma (edge.findMany) in ${QUERIES}:1, but its one read path is SQL in ${READER}`,
    ]);
    expect(planted(READER, 'await this.q.query(`select n.text from "public"."notes" n join projects p on p.id = n.project_id where ${x}`);')).toEqual([
      `notes: read in SQL in ${READER}:1, but its one read path is Prisma in ${QUERIES}`,
      null,
    ]);
    expect(planted('packages/api/src/keys.ts', `await db.query('SELECT 1 FROM projects WHERE id = $1', [id]);`)).toEqual([
      `projects: read in SQL in packages/api/src/keys.ts:1, but its one read path is SQL in ${READER}`,
    ]);
    expect(planted('packages/lineage/src/commands.ts', 'await prisma.metricSeries.count();')).toEqual([
      `metric_series: read through Prisma (metricSeries.count) in packages/lineage/src/commands.ts:1, but its one read path is SQL in ${READER}, ${BUCKETS}`,
    ]);
    // Writes and non-projections are not reads of a projection.
    expect(planted('packages/lineage/src/projection.ts', `await tx.query('DELETE FROM runs WHERE id = $1'); await tx.query('UPDATE runs SET name = $2 WHERE id = $1'); await q.query('SELECT * FROM events');`)).toEqual([
      null,
    ]);
  });
});
