import { isNonFinite, MAX_KEY, metricNumber } from '@pedigree/ledger';
import type { Access } from '../access.ts';
import type { Context } from '../context.ts';
import { invalid } from './errors.ts';

/**
 * Reading MLflow's requests. POST bodies are protobuf JSON (int64 may arrive as
 * a number or a string of digits, doubles as numbers or "NaN"/"Infinity");
 * GET requests carry the same fields in the query string.
 */
export type Body = Record<string, unknown>;

/** One MLflow request as a handler sees it: the caller's context and access, and the request's body. */
export interface Call {
  ctx: Context;
  access: Access;
  body: Body;
}

export function optionalString(body: Body, field: string, max = 1 << 20): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`${field} must be a string, got ${JSON.stringify(v)}`);
  if (v.length > max) throw invalid(`${field} is ${v.length} characters; at most ${max}`);
  return v;
}

export function requiredString(body: Body, field: string, max?: number): string {
  const v = optionalString(body, field, max);
  if (v === undefined || v === '') throw invalid(`Missing value for required parameter '${field}'.`);
  return v;
}

export function optionalInt(body: Body, field: string, opts: { min?: number } = {}): number | undefined {
  const v = body[field];
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^[-+]?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw invalid(`${field} must be an integer, got ${JSON.stringify(v)}`);
  if (opts.min !== undefined && n < opts.min) throw invalid(`${field} must be at least ${opts.min}, got ${n}`);
  return n;
}

/**
 * A metric value: a number, a numeric string, or NaN/±Infinity spelled out
 * (protobuf JSON's doubles, spelled as our events spell them; Python's `inf`
 * too). Written back with the ledger's metricJson.
 */
export function metricValue(v: unknown, where: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const t = v.trim();
    if (isNonFinite(t)) return metricNumber(t);
    if (t === 'inf') return Infinity;
    if (t === '-inf') return -Infinity;
    if (t !== '' && Number.isFinite(Number(t))) return Number(t);
  }
  throw invalid(`${where} must be a number, got ${JSON.stringify(v)}`);
}

export function list(body: Body, field: string): unknown[] {
  const v = body[field];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(`${field} must be a list, got ${JSON.stringify(v).slice(0, 100)}`);
  return v;
}

export interface KeyValue {
  key: string;
  value: string;
}

export function keyValues(body: Body, field: string): KeyValue[] {
  return list(body, field).map((t, i) => {
    if (!t || typeof t !== 'object') throw invalid(`${field}[${i}] must be an object with key and value`);
    const o = t as Body;
    const key = requiredString(o, 'key', MAX_KEY);
    const value = o.value === undefined || o.value === null ? '' : o.value;
    if (typeof value !== 'string') throw invalid(`${field}[${i}].value must be a string, got ${JSON.stringify(value)}`);
    return { key, value };
  });
}

/** The query string as a body: repeated keys become lists (experiment_ids=1&experiment_ids=2). */
export function queryBody(url: URL): Body {
  const out: Body = {};
  for (const key of new Set(url.searchParams.keys())) {
    const all = url.searchParams.getAll(key);
    out[key] = all.length > 1 || key.endsWith('_ids') || key === 'order_by' ? all : all[0];
  }
  return out;
}

export const VIEW_TYPES = { ACTIVE_ONLY: 'active', DELETED_ONLY: 'deleted', ALL: 'all' } as const;

/** view_type / run_view_type: by name, or by protobuf enum number (1, 2, 3). */
export function viewType(body: Body, field: string): 'active' | 'deleted' | 'all' {
  const v = body[field];
  if (v === undefined || v === null || v === '') return 'active';
  const byNumber: Record<string, keyof typeof VIEW_TYPES> = { '1': 'ACTIVE_ONLY', '2': 'DELETED_ONLY', '3': 'ALL' };
  const name = typeof v === 'number' || /^\d$/.test(String(v)) ? byNumber[String(v)] : String(v).toUpperCase();
  const mapped = name ? VIEW_TYPES[name as keyof typeof VIEW_TYPES] : undefined;
  if (!mapped) throw invalid(`${field} must be ACTIVE_ONLY, DELETED_ONLY or ALL, got ${JSON.stringify(v)}`);
  return mapped;
}
