import { randomUUID } from 'node:crypto';
import { pgConstraint, pgErrorCode, type Db, type Queryable } from '@pedigree/db';
import { z } from 'zod';
import { canonicalJson, GENESIS_HASH, jsonDepth, MAX_JSON_DEPTH, sha256Hex } from './canonical.ts';
import { ConcurrencyError, IdempotencyError, TooLargeError, ValidationError, type Issue } from './errors.ts';
import { EventSchemas, upcast, type EventMetadata, type EventType, type NewEvent, type StoredEvent } from './events.ts';

/** A read model kept in step with the events, inside the append's transaction. */
export interface Projection {
  readonly name: string;
  /** Tables this projection owns; `rebuild` empties them first. */
  readonly tables: readonly string[];
  apply(tx: Queryable, events: readonly StoredEvent[]): Promise<void>;
}

export interface AppendOptions {
  /** The stream's version the caller decided on (0: the stream must not exist yet), or 'any'. */
  expectedVersion: number | 'any';
  projectId: string;
  /**
   * Runs inside the transaction, after the stream is locked and before the
   * insert: for invariants that span streams (e.g. no lineage cycles). Throw to refuse.
   */
  check?: (tx: Queryable) => Promise<void>;
  /**
   * For a retry (an event id already stored): whether the stored data of the
   * event at `index` stands for the same event as the proposal, when the two
   * may differ in fields the server filled in (a point's time left to the
   * server). Without it, the canonical data must match exactly.
   */
  sameEvent?: (index: number, storedData: unknown) => boolean;
}

export interface AppendResult {
  streamId: string;
  /** The stream's version after the append. */
  version: number;
  positions: number[];
  eventIds: string[];
  /** True when every event id was already stored: a retry, nothing written. */
  duplicate: boolean;
}

export const NOTIFY_CHANNEL = 'pedigree_events';
/** All appends take this transaction-scoped lock, so positions commit in order and readers never skip one. */
export const APPEND_LOCK = 72490002;
export const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const MAX_EVENTS_PER_APPEND = 1000;

const STREAM_ID = /^(project|run|artifact)-[0-9a-f-]{36}$/;
const UUID = z.uuid();

interface Prepared {
  eventId: string;
  type: EventType;
  schemaVersion: number;
  data: unknown;
  metadata: EventMetadata;
  dataJson: string;
  metadataJson: string;
}

export interface EventRow {
  position: number;
  stream_id: string;
  stream_version: number;
  event_id: string;
  project_id: string;
  type: string;
  schema_version: number;
  data: unknown;
  metadata: unknown;
  recorded_at: Date;
  prev_hash: string;
  hash: string;
}

export const EVENT_COLUMNS = 'position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash';

/**
 * SHA-256 over the previous hash and the canonical event. `dataJson` is the
 * canonical form of `e.data` when the caller already has it (appends do), so
 * a large metric batch is canonicalised once, not twice.
 */
export function eventHash(prevHash: string, e: Omit<StoredEvent, 'position' | 'prevHash' | 'hash'>, dataJson = canonicalJson(e.data)): string {
  const envelope = canonicalJson({
    streamId: e.streamId,
    streamVersion: e.streamVersion,
    eventId: e.eventId,
    projectId: e.projectId,
    type: e.type,
    schemaVersion: e.schemaVersion,
    metadata: e.metadata,
    recordedAt: e.recordedAt.toISOString(),
  });
  // Keys sort as "data" < "eventId" < …, so canonical({data, ...rest}) is this splice.
  return sha256Hex(`${prevHash}{"data":${dataJson},${envelope.slice(1)}`);
}

export function rowToEvent(row: EventRow): StoredEvent {
  const type = row.type as EventType;
  return {
    position: row.position,
    streamId: row.stream_id,
    streamVersion: row.stream_version,
    eventId: row.event_id,
    projectId: row.project_id,
    type,
    schemaVersion: row.schema_version,
    data: upcast(type, row.schema_version, row.data),
    metadata: row.metadata as EventMetadata,
    recordedAt: row.recorded_at,
    prevHash: row.prev_hash,
    hash: row.hash,
  } as StoredEvent;
}

/** Strings Postgres cannot store in jsonb (NUL, unpaired surrogates), found before the database refuses them. */
function findUnstorableStrings(value: unknown, path: string, out: Issue[]): void {
  if (out.length > 5) return;
  if (typeof value === 'string') {
    if (value.includes('\u0000')) out.push({ path, message: 'strings may not contain NUL (\\u0000)' });
    else if (!value.isWellFormed()) out.push({ path, message: 'strings must be valid Unicode (unpaired surrogate)' });
  } else if (Array.isArray(value)) value.forEach((v, i) => findUnstorableStrings(v, `${path}[${i}]`, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      findUnstorableStrings(k, `${path}.${k}(key)`, out);
      findUnstorableStrings(v, path ? `${path}.${k}` : k, out);
    }
  }
}

export function zodIssues(err: z.ZodError, prefix = ''): Issue[] {
  return err.issues.map((i) => ({ path: [prefix, ...i.path.map(String)].filter(Boolean).join('.'), message: i.message }));
}

export class EventStore {
  constructor(
    readonly db: Db,
    readonly projections: readonly Projection[] = [],
  ) {}

  /** Validates and canonicalises proposed events. Pure: touches no database. */
  prepare(events: readonly NewEvent[], metadata: EventMetadata = {}): Prepared[] {
    if (events.length === 0) throw new ValidationError('nothing to append');
    if (events.length > MAX_EVENTS_PER_APPEND) throw new TooLargeError(`at most ${MAX_EVENTS_PER_APPEND} events per append, got ${events.length}`);
    return events.map((e, i) => {
      const def = EventSchemas[e.type as EventType];
      if (!def) throw new ValidationError(`unknown event type ${JSON.stringify(e.type)}`);
      // Before anything recursive (zod, canonical JSON) walks it: a deep value would overflow the stack.
      if (jsonDepth(e.data, MAX_JSON_DEPTH + 2) > MAX_JSON_DEPTH + 2 || jsonDepth(e.metadata ?? null, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
        throw new ValidationError(`invalid ${e.type}`, [{ path: `events[${i}].data`, message: `nested more than ${MAX_JSON_DEPTH} levels deep` }]);
      }
      const parsed = def.schema.safeParse(e.data);
      if (!parsed.success) throw new ValidationError(`invalid ${e.type}`, zodIssues(parsed.error, `events[${i}].data`));
      const eventId = e.eventId ?? randomUUID();
      if (!UUID.safeParse(eventId).success) throw new ValidationError(`event id must be a UUID, got ${JSON.stringify(eventId)}`);
      const meta = { ...metadata, ...e.metadata };
      const bad: Issue[] = [];
      findUnstorableStrings(parsed.data, `events[${i}].data`, bad);
      findUnstorableStrings(meta, `events[${i}].metadata`, bad);
      if (bad.length) throw new ValidationError(`invalid ${e.type}`, bad);
      const dataJson = canonicalJson(parsed.data);
      if (dataJson.length > MAX_EVENT_BYTES) throw new TooLargeError(`${e.type} is ${dataJson.length} bytes; at most ${MAX_EVENT_BYTES}`);
      return { eventId: eventId.toLowerCase(), type: e.type, schemaVersion: def.version, data: parsed.data, metadata: meta, dataJson, metadataJson: canonicalJson(meta) };
    });
  }

  async append(streamId: string, events: readonly NewEvent[], opts: AppendOptions & { metadata?: EventMetadata }): Promise<AppendResult> {
    if (!STREAM_ID.test(streamId)) throw new ValidationError(`bad stream id ${JSON.stringify(streamId)} (expected project-|run-|artifact-<uuid>)`);
    if (!UUID.safeParse(opts.projectId).success) throw new ValidationError(`project id must be a UUID, got ${JSON.stringify(opts.projectId)}`);
    if (opts.expectedVersion !== 'any' && !(Number.isInteger(opts.expectedVersion) && opts.expectedVersion >= 0)) {
      throw new ValidationError(`expectedVersion must be a non-negative integer or 'any'`);
    }
    const prepared = this.prepare(events, opts.metadata);
    const ids = prepared.map((p) => p.eventId);
    if (new Set(ids).size !== ids.length) throw new ValidationError('the same event id appears twice in one append');

    try {
      return await this.db.transaction((tx) => this.appendIn(tx, streamId, prepared, opts));
    } catch (err) {
      // Two identical retries racing: the loser sees the winner's rows.
      if (pgErrorCode(err) === '23505') {
        const again = await this.findDuplicate(this.db, streamId, prepared, opts.sameEvent);
        if (again) return again;
        if (pgConstraint(err) === 'events_stream_id_stream_version_key') {
          const actual = await this.streamVersion(streamId);
          throw new ConcurrencyError(streamId, opts.expectedVersion === 'any' ? -1 : opts.expectedVersion, actual);
        }
        if (pgConstraint(err) === 'events_event_id_key') throw new IdempotencyError('an event id was already used by another event');
      }
      throw err;
    }
  }

  private async appendIn(tx: Queryable, streamId: string, prepared: Prepared[], opts: AppendOptions): Promise<AppendResult> {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK]);
    const duplicate = await this.findDuplicate(tx, streamId, prepared, opts.sameEvent);
    if (duplicate) return duplicate;

    const [head] = await tx.query<{ stream_version: number; hash: string; project_id: string }>(
      'SELECT stream_version, hash, project_id FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1',
      [streamId],
    );
    const current = head?.stream_version ?? 0;
    if (opts.expectedVersion !== 'any' && opts.expectedVersion !== current) {
      throw new ConcurrencyError(streamId, opts.expectedVersion, current);
    }
    if (head && head.project_id !== opts.projectId) {
      throw new ValidationError(`stream ${streamId} belongs to another project`);
    }
    await opts.check?.(tx);

    let prevHash = head?.hash ?? GENESIS_HASH;
    const recordedAt = new Date();
    const stored: StoredEvent[] = [];
    for (const [i, p] of prepared.entries()) {
      const base = {
        streamId,
        streamVersion: current + i + 1,
        eventId: p.eventId,
        projectId: opts.projectId,
        type: p.type,
        schemaVersion: p.schemaVersion,
        data: p.data,
        metadata: p.metadata,
        recordedAt,
      } as Omit<StoredEvent, 'position' | 'prevHash' | 'hash'>;
      const hash = eventHash(prevHash, base, p.dataJson);
      const [row] = await tx.query<{ position: number }>(
        `INSERT INTO events (stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11) RETURNING position`,
        [streamId, base.streamVersion, p.eventId, opts.projectId, p.type, p.schemaVersion, p.dataJson, p.metadataJson, recordedAt, prevHash, hash],
      );
      stored.push({ ...base, position: row!.position, prevHash, hash } as StoredEvent);
      prevHash = hash;
    }
    for (const projection of this.projections) await projection.apply(tx, stored);
    const last = stored[stored.length - 1]!;
    await tx.query('SELECT pg_notify($1, $2)', [NOTIFY_CHANNEL, `${last.position}`]);
    return { streamId, version: last.streamVersion, positions: stored.map((e) => e.position), eventIds: stored.map((e) => e.eventId), duplicate: false };
  }

  /** A retried append: every id stored already, as the same events on the same stream. */
  private async findDuplicate(q: Queryable, streamId: string, prepared: Prepared[], sameEvent?: AppendOptions['sameEvent']): Promise<AppendResult | null> {
    const rows = await q.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[]) ORDER BY position`, [prepared.map((p) => p.eventId)]);
    if (rows.length === 0) return null;
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    for (const [i, p] of prepared.entries()) {
      const r = byId.get(p.eventId);
      if (!r) throw new IdempotencyError(`some of these event ids are stored and some are not (e.g. ${p.eventId} is new): a retry must resend the same events`);
      const sameData = canonicalJson(r.data) === p.dataJson || (sameEvent?.(i, r.data) ?? false);
      if (r.stream_id !== streamId || r.type !== p.type || !sameData) {
        throw new IdempotencyError(`event id ${p.eventId} is already stored as a different event (${r.type} on ${r.stream_id})`);
      }
    }
    const ordered = prepared.map((p) => byId.get(p.eventId)!);
    return {
      streamId,
      version: Math.max(...ordered.map((r) => r.stream_version)),
      positions: ordered.map((r) => r.position),
      eventIds: ordered.map((r) => r.event_id),
      duplicate: true,
    };
  }

  /** Whether an event with this id is stored (one index probe): for a caller whose retry would propose different events. */
  async hasEvent(eventId: string): Promise<boolean> {
    if (!UUID.safeParse(eventId).success) return false;
    const [row] = await this.db.query('SELECT 1 FROM events WHERE event_id = $1', [eventId.toLowerCase()]);
    return Boolean(row);
  }

  async streamVersion(streamId: string): Promise<number> {
    const [row] = await this.db.query<{ v: number | null }>('SELECT max(stream_version) AS v FROM events WHERE stream_id = $1', [streamId]);
    return row?.v ?? 0;
  }

  async readStream(streamId: string, opts: { fromVersion?: number; limit?: number } = {}): Promise<StoredEvent[]> {
    const rows = await this.db.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3`,
      [streamId, opts.fromVersion ?? 1, opts.limit ?? 100_000],
    );
    return rows.map(rowToEvent);
  }

  /** Events after `afterPosition` in global order. */
  async readAll(opts: { afterPosition?: number; limit?: number; projectId?: string; streamId?: string } = {}): Promise<StoredEvent[]> {
    const where = ['position > $1'];
    const params: unknown[] = [opts.afterPosition ?? 0];
    if (opts.projectId) where.push(`project_id = $${params.push(opts.projectId)}`);
    if (opts.streamId) where.push(`stream_id = $${params.push(opts.streamId)}`);
    const rows = await this.db.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE ${where.join(' AND ')} ORDER BY position LIMIT $${params.push(opts.limit ?? 1000)}`,
      params,
    );
    return rows.map(rowToEvent);
  }

  async lastPosition(): Promise<number> {
    const [row] = await this.db.query<{ p: number | null }>('SELECT max(position) AS p FROM events');
    return row?.p ?? 0;
  }
}
