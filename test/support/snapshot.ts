import type { Db } from '@pedigree/db';
import { LINEAGE_TABLES } from '@pedigree/lineage';

/** Every row of every table, as text in a fixed order: "byte-for-byte unchanged" means equal snapshots. */
export async function snapshot(db: Db): Promise<string> {
  const parts: string[] = [];
  for (const table of ['events', 'event_ids', 'metric_chunks', ...LINEAGE_TABLES]) {
    const [row] = await db.query<{ s: string | null }>(`SELECT string_agg(t::text, E'\\n' ORDER BY t::text) AS s FROM "${table}" t`);
    parts.push(`## ${table}\n${row?.s ?? ''}`);
  }
  return parts.join('\n');
}
