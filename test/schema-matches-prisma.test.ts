/**
 * prisma/schema.prisma and prisma/migrations must describe the same database:
 * the migrations are applied by our own runner (Prisma's migrate engine cannot
 * be downloaded here), so this test is what keeps them in step.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPglite, migrate, type Db } from '@pedigree/db';

interface Field {
  column: string;
  type: string;
  optional: boolean;
  list: boolean;
}

/** Models of schema.prisma: table name and scalar fields (column, Prisma type, ?, []). */
function parsePrismaSchema(text: string): Map<string, Field[]> {
  const models = new Map<string, Field[]>();
  for (const m of text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const body = m[2]!;
    const table = /@@map\("([^"]+)"\)/.exec(body)?.[1] ?? m[1]!;
    const fields: Field[] = [];
    for (const line of body.split('\n')) {
      const f = /^\s+(\w+)\s+(\w+(?:\("\w+"\))?)(\[\])?(\?)?(.*)$/.exec(line);
      if (!f || line.trim().startsWith('//') || line.trim().startsWith('@@')) continue;
      const column = /@map\("([^"]+)"\)/.exec(f[5]!)?.[1] ?? f[1]!;
      fields.push({ column, type: f[2]!, list: Boolean(f[3]), optional: Boolean(f[4]) });
    }
    models.set(table, fields);
  }
  return models;
}

/** Postgres column types each Prisma scalar may map to (with the @db attributes used). */
const PG_TYPES: Record<string, string[]> = {
  String: ['text', 'uuid'],
  Int: ['integer'],
  BigInt: ['bigint'],
  Float: ['double precision'],
  Boolean: ['boolean'],
  DateTime: ['timestamp with time zone', 'timestamp without time zone'],
  Json: ['jsonb'],
  Bytes: ['bytea'],
};
/** Array columns' element types (udt_name). */
const PG_ARRAY_TYPES: Record<string, string[]> = { String: ['_text', '_uuid'], BigInt: ['_int8'], Float: ['_float8'], Int: ['_int4'] };

describe('schema.prisma matches the migrated database', () => {
  let db: Db;
  beforeAll(async () => {
    db = await openPglite(':memory:');
    await migrate(db);
  });
  afterAll(() => db.close());

  it('has exactly the tables, columns, types and nullability the Prisma schema declares', async () => {
    const schema = parsePrismaSchema(readFileSync('prisma/schema.prisma', 'utf8'));
    const rows = await db.query<{ table_name: string; column_name: string; data_type: string; udt_name: string; is_nullable: string }>(
      // A partition is its table's storage, not a table of its own.
      `SELECT table_name, column_name, data_type, udt_name, is_nullable FROM information_schema.columns c
       WHERE table_schema = 'public' AND table_name <> '_pedigree_migrations'
         AND NOT EXISTS (SELECT FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid WHERE k.relname = c.table_name)`,
    );
    const tables = new Set(rows.map((r) => r.table_name));
    expect([...tables].sort()).toEqual([...schema.keys()].sort());
    for (const [table, fields] of schema) {
      const cols = rows.filter((r) => r.table_name === table);
      expect(cols.map((c) => c.column_name).sort(), table).toEqual(fields.map((f) => f.column).sort());
      for (const f of fields) {
        const col = cols.find((c) => c.column_name === f.column)!;
        const where = `${table}.${f.column}`;
        if (f.list) {
          expect(col.data_type, where).toBe('ARRAY');
          expect(PG_ARRAY_TYPES[f.type], where).toContain(col.udt_name);
        } else if (f.type.startsWith('Unsupported(')) {
          expect(f.type, where).toBe(`Unsupported("${col.udt_name}")`);
        } else {
          expect(PG_TYPES[f.type], `${where}: Prisma type ${f.type}`).toContain(col.data_type);
        }
        expect(col.is_nullable === 'YES', `${where} nullable`).toBe(f.optional);
      }
    }
  });

  it('has the primary keys and unique constraints the Prisma schema declares', async () => {
    const text = readFileSync('prisma/schema.prisma', 'utf8');
    const indexes = await db.query<{ tablename: string; indexdef: string }>(`SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'`);
    for (const m of text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
      const body = m[2]!;
      const table = /@@map\("([^"]+)"\)/.exec(body)?.[1] ?? m[1]!;
      const columnOf = new Map(
        body.split('\n').flatMap((line) => {
          const name = /^\s+(\w+)\s/.exec(line)?.[1];
          return name ? [[name, /@map\("([^"]+)"\)/.exec(line)?.[1] ?? name] as const] : [];
        }),
      );
      const column = (field: string) => columnOf.get(field) ?? field;
      const keys: { unique: boolean; cols: string[] }[] = [];
      for (const line of body.split('\n')) {
        const single = /^\s+(\w+)\s.*@(id|unique)\b/.exec(line);
        if (single) keys.push({ unique: true, cols: [column(single[1]!)] });
      }
      for (const k of body.matchAll(/@@(id|unique|index)\(\[([^\]]+)\]\)/g)) {
        keys.push({ unique: k[1] !== 'index', cols: k[2]!.split(',').map((s) => column(s.trim())) });
      }
      for (const k of keys) {
        const cols = k.cols.map((c) => `"?${c}"?`).join(', ');
        const pattern = new RegExp(`CREATE ${k.unique ? 'UNIQUE ' : ''}INDEX \\S+ ON (ONLY )?public\\.${table} USING btree \\(${cols}\\)$`);
        expect(indexes.filter((i) => i.tablename === table).map((i) => i.indexdef), `${table} (${k.cols.join(', ')})`).toContainEqual(expect.stringMatching(pattern));
      }
    }
  });

  it('is what the generated Prisma client expects (its runtime data model)', async () => {
    const { readFileSync: read } = await import('node:fs');
    const cls = read('packages/db/src/generated/prisma/internal/class.ts', 'utf8');
    const json = /config\.runtimeDataModel = JSON\.parse\((".*")\)/.exec(cls)![1]!;
    const model = JSON.parse(JSON.parse(json)) as { models: Record<string, { dbName: string; fields: { name: string; kind: string; dbName?: string }[] }> };
    const schema = parsePrismaSchema(readFileSync('prisma/schema.prisma', 'utf8'));
    for (const m of Object.values(model.models)) {
      expect(schema.has(m.dbName), `generated client table ${m.dbName}`).toBe(true);
      // An Unsupported("…") column is the database's alone: the client never reads or writes it.
      const columns = schema.get(m.dbName)!.filter((f) => !f.type.startsWith('Unsupported('));
      expect(m.fields.filter((f) => f.kind === 'scalar').map((f) => f.dbName ?? f.name).sort()).toEqual(columns.map((f) => f.column).sort());
    }
  });
});
