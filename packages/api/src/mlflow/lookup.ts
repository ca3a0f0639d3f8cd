import type { RunView } from '@pedigree/lineage';
import type { Access } from '../access.ts';
import type { Context } from '../context.ts';
import { invalid, notFound } from './errors.ts';
import { optionalString, type Body } from './wire.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** MLflow's run ids are 32 hex digits; Pedigree's are UUIDs. Both are accepted. */
export async function runOf(call: { ctx: Context; access: Access; body: Body }, fieldOrRef?: string): Promise<RunView> {
  const ref = fieldOrRef ?? optionalString(call.body, 'run_id') ?? optionalString(call.body, 'run_uuid');
  if (!ref) throw invalid(`Missing value for required parameter 'run_id'.`);
  const id = /^[0-9a-f]{32}$/i.test(ref) ? `${ref.slice(0, 8)}-${ref.slice(8, 12)}-${ref.slice(12, 16)}-${ref.slice(16, 20)}-${ref.slice(20)}` : ref;
  if (!UUID.test(id)) throw notFound(`Run with id=${ref} not found`);
  try {
    const row = await call.access.run(id.toLowerCase());
    return await call.ctx.pedigree.lineage.run(row.id);
  } catch (err) {
    if ((err as { code?: string }).code === 'NOT_FOUND') throw notFound(`Run with id=${ref} not found`);
    throw err;
  }
}

