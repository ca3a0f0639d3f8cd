import { randomUUID } from 'node:crypto';
import { pgConstraint, pgErrorCode, type Db, type Queryable } from '@pedigree/db';
import { z } from 'zod';
import { canonicalJson, GENESIS_HASH, jsonDepth, MAX_JSON_DEPTH, sha256Hex } from './canonical.ts';
import { CHUNK_READ_COLUMNS, chunkOfRow, chunkPoints, inChunkOrder, manifestOf, pointsOf, type ChunkRow, type MetricChunk, type MetricPointData } from './chunks.ts';
import { ConcurrencyError, IdempotencyError, TooLargeError, ValidationError, type Issue } from './errors.ts';
import { EventSchemas, upcast, validMetricBatch, type EventMetadata, type EventType, type NewEvent, type StoredEvent } from './events.ts';

/** A read model kept in step with the events, inside the append's transaction. */
export interface Projection {
  readonly name: string;
  /** Tables this projection owns; `rebuild` empties them first. */
  readonly tables: readonly string[];
  apply(tx: Queryable, events: readonly StoredEvent[]): Promise<void>;
  /**
   * For `replay`: rebuilds every table of this projection from the whole log
   * in set-based statements (run after the tables were emptied, inside the
   * replay's transaction), as `apply` would have left them event by event.
   * Without it, replay applies the events batch by batch.
   */
  rebuild?(tx: Queryable): Promise<void>;
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
   * Whether `check` reads what other streams' appends write (lineage
   * cycles, unique names): then appends with such checks go one at a time,
   * store-wide. A check that reads only what this stream's own events write
   * (a run's status) is safe under the stream's lock alone. Default: true.
   */
  checkReadsOtherStreams?: boolean;
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
/**
 * Taken for a moment by every append (pedigree_reserve_positions, which hands
 * out positions in the order of transaction ids), and for a whole transaction
 * by `replay`, which so holds every writer off.
 */
export const APPEND_LOCK = 72490002;
/** With a stream id's hashtext: appends to one stream go one at a time (its chain and versions). */
export const STREAM_LOCK = 72490003;
/** Appends whose `check` reads other streams (no lineage cycles, unique names) go one at a time. */
export const CHECK_LOCK = 72490004;
/**
 * The unique indexes whose violation an append explains, by name on the table
 * or on one of its partitions (a partition's index reports its own name:
 * events_p3_stream_id_stream_version_project_id_key, event_ids_p7_pkey).
 */
const STREAM_VERSION_KEY = /^events(_p\d+)?_stream_id_stream_version/;
const EVENT_ID_KEY = /^(events(_p\d+)?_event_id|event_ids(_p\d+)?_pkey$)/;
/** Held (shared) by every appending transaction from before it has an id until it ends. */
export const APPENDER_MARK = 72490005;
/**
 * Rows a reader following the log may read, as a condition on `events`.
 * Positions rise with transaction ids (pedigree_reserve_positions hands out
 * both under one short lock, to transactions that have written nothing
 * before), so the events a transaction still running may yet commit all lie
 * above every event of a lower transaction id. The bound is the lowest id
 * that was running at the statement's snapshot, unless that transaction is
 * still running and not appending (no APPENDER_MARK): it can never append.
 * Running transactions and appender marks come from one read of the lock
 * table (one instant, after the snapshot): a transaction that ended since
 * the snapshot counts (conservatively), so a read is always a prefix, in
 * position order, of everything that will ever commit. Unlike
 * pg_snapshot_xmin alone, a long write elsewhere on the server (another
 * database, a bulk load) does not hold followers back. SETTLED_BELOW is the
 * bound itself: events of lower transaction ids are settled.
 */
/** The lock table, read once (one instant). */
const LOCKS = `l AS MATERIALIZED (
    SELECT locktype, pid, transactionid, database, classid, objid, objsubid FROM pg_locks WHERE locktype IN ('transactionid', 'advisory'))`;
/** Whether the transaction holding lock `t` appends (holds APPENDER_MARK in this database). */
const MARKED = `EXISTS (
        SELECT 1 FROM l m
        WHERE m.pid = t.pid AND m.locktype = 'advisory' AND m.classid = 0 AND m.objid = ${APPENDER_MARK} AND m.objsubid = 1
          AND m.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`;
/** The lowest id in the statement's snapshot meeting `cond` (on x, and lock `t` its transaction holds), else the snapshot's xmax. */
const lowestRunning = (cond: string) => `coalesce((
  WITH ${LOCKS}
  SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
  WHERE ${cond}
), pg_snapshot_xmax(pg_current_snapshot()))`;
const SETTLED_BELOW = lowestRunning(`NOT EXISTS (SELECT 1 FROM l t WHERE t.locktype = 'transactionid' AND t.transactionid = xid(x) AND NOT ${MARKED})`);
/**
 * The same bound counting only transactions still appending when the lock
 * table is read, not those that ended since the snapshot. Events below it
 * that SETTLED holds back wait on no running append: a fresh statement
 * (a new snapshot, without the ended transaction) reads them as settled.
 * A standby's lock table does not show the primary's transactions, so there
 * every one counts (the bound is SETTLED_BELOW's, and nothing is asked again).
 */
const APPENDING_BELOW = lowestRunning(`pg_is_in_recovery() OR EXISTS (SELECT 1 FROM l t WHERE t.locktype = 'transactionid' AND t.transactionid = xid(x) AND ${MARKED})`);
/** An event written below this bound (or before events had transaction ids). */
const below = (bound: string) => `(tx_id IS NULL OR tx_id < ${bound})`;
export const SETTLED = below(SETTLED_BELOW);
/** Not held back by a transaction still appending (see APPENDING_BELOW). */
const UNBLOCKED = below(APPENDING_BELOW);
export const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const MAX_EVENTS_PER_APPEND = 1000;

const STREAM_ID = /^(project|run|artifact)-[0-9a-f-]{36}$/;
const UUID = z.uuid();

/** An event validated and canonicalised, ready to append (what `prepare` returns). */
export interface Prepared {
  eventId: string;
  type: EventType;
  schemaVersion: number;
  data: unknown;
  metadata: EventMetadata;
  dataJson: string;
  metadataJson: string;
  /** A MetricsLogged batch's points, one chunk per key: stored beside the event, named by its data. */
  chunks?: MetricChunk[];
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

/** Whether a row's points live in metric_chunks (MetricsLogged from schema version 2), not in its data. */
export function hasChunks(row: Pick<EventRow, 'type' | 'schema_version'>): boolean {
  return row.type === 'MetricsLogged' && row.schema_version >= 2;
}

/**
 * The event a row stores. A v2 MetricsLogged row's points come from its
 * chunks (see `readEvents`, which fetches them); other rows stand alone.
 */
export function rowToEvent(row: EventRow, chunks?: ReadonlyMap<number, MetricPointData[]>): StoredEvent {
  const type = row.type as EventType;
  let data: unknown;
  if (hasChunks(row)) {
    const points = chunks?.get(row.position);
    if (!points) throw new Error(`the points of MetricsLogged at position ${row.position} were not read`);
    data = { points };
  } else {
    data = upcast(type, row.schema_version, row.data);
  }
  return {
    position: row.position,
    streamId: row.stream_id,
    streamVersion: row.stream_version,
    eventId: row.event_id,
    projectId: row.project_id,
    type,
    schemaVersion: row.schema_version,
    data,
    metadata: row.metadata as EventMetadata,
    recordedAt: row.recorded_at,
    prevHash: row.prev_hash,
    hash: row.hash,
  } as StoredEvent;
}

/** The points of these rows' chunks, by event position (rows without chunks are skipped). */
export async function readChunkPoints(q: Queryable, rows: readonly EventRow[]): Promise<Map<number, MetricPointData[]>> {
  const positions = rows.filter(hasChunks).map((r) => r.position);
  const out = new Map<number, MetricPointData[]>();
  if (positions.length === 0) return out;
  const chunkRows = await q.query<ChunkRow>(`SELECT ${CHUNK_READ_COLUMNS} FROM metric_chunks WHERE position = ANY($1::int8[]) ORDER BY position, idx`, [positions]);
  const byPosition = new Map<number, ReturnType<typeof chunkOfRow>[]>();
  for (const r of chunkRows) {
    const list = byPosition.get(r.position);
    if (list) list.push(chunkOfRow(r));
    else byPosition.set(r.position, [chunkOfRow(r)]);
  }
  for (const [position, chunks] of byPosition) out.set(position, pointsOf(chunks));
  return out;
}

/** Rows as events, their chunks read in one query. */
export async function readEvents(q: Queryable, rows: readonly EventRow[]): Promise<StoredEvent[]> {
  const chunks = await readChunkPoints(q, rows);
  return rows.map((r) => rowToEvent(r, chunks));
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
      // A valid metric batch is flat (checked without recursion); anything else is measured before
      // anything recursive (zod, canonical JSON) walks it: a deep value would overflow the stack.
      const fast = e.type === 'MetricsLogged' ? validMetricBatch(e.data) : null;
      if ((!fast && jsonDepth(e.data, MAX_JSON_DEPTH + 2) > MAX_JSON_DEPTH + 2) || jsonDepth(e.metadata ?? null, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
        throw new ValidationError(`invalid ${e.type}`, [{ path: `events[${i}].data`, message: `nested more than ${MAX_JSON_DEPTH} levels deep` }]);
      }
      const parsed = fast ? { success: true as const, data: fast } : def.schema.safeParse(e.data);
      if (!parsed.success) throw new ValidationError(`invalid ${e.type}`, zodIssues(parsed.error, `events[${i}].data`));
      const eventId = e.eventId ?? randomUUID();
      if (!UUID.safeParse(eventId).success) throw new ValidationError(`event id must be a UUID, got ${JSON.stringify(eventId)}`);
      const meta = { ...metadata, ...e.metadata };
      const bad: Issue[] = [];
      // A metric batch's strings are its keys, which the schema's pattern keeps storable.
      if (e.type !== 'MetricsLogged') findUnstorableStrings(parsed.data, `events[${i}].data`, bad);
      findUnstorableStrings(meta, `events[${i}].metadata`, bad);
      if (bad.length) throw new ValidationError(`invalid ${e.type}`, bad);
      const base = { eventId: eventId.toLowerCase(), type: e.type, schemaVersion: def.version, metadata: meta, metadataJson: canonicalJson(meta) };
      if (e.type === 'MetricsLogged') {
        // Stored as columns, one chunk per key; the event's data names them (see chunks.ts).
        const points = (parsed.data as { points: MetricPointData[] }).points;
        const chunks = chunkPoints(points);
        return { ...base, data: { points: inChunkOrder(points) }, dataJson: canonicalJson(manifestOf(chunks)), chunks };
      }
      const dataJson = canonicalJson(parsed.data);
      if (dataJson.length > MAX_EVENT_BYTES) throw new TooLargeError(`${e.type} is ${dataJson.length} bytes; at most ${MAX_EVENT_BYTES}`);
      return { ...base, data: parsed.data, dataJson };
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
        if (STREAM_VERSION_KEY.test(pgConstraint(err) ?? '')) {
          const actual = await this.streamVersion(streamId);
          throw new ConcurrencyError(streamId, opts.expectedVersion === 'any' ? -1 : opts.expectedVersion, actual);
        }
        if (EVENT_ID_KEY.test(pgConstraint(err) ?? '')) throw new IdempotencyError('an event id was already used by another event');
      }
      throw err;
    }
  }

  private async appendIn(tx: Queryable, streamId: string, prepared: Prepared[], opts: AppendOptions): Promise<AppendResult> {
    // No store-wide lock: only appends to the same stream (and those whose check reads other streams) wait on each other.
    if (opts.check && opts.checkReadsOtherStreams !== false) await tx.query('SELECT pg_advisory_xact_lock($1)', [CHECK_LOCK]);
    // The stream's lock, then (sent with it, run after it: the read's snapshot is taken once the lock is held)
    // the events these ids already name (a retry) and the stream's head. Both reads open the project's partition
    // only (planned in ~0.2 ms; a branch over every partition took ~0.9 ms to plan, on every append). A retry of
    // an id stored under another project is refused by event_ids at the insert.
    const [, found] = await Promise.all([
      tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [STREAM_LOCK, streamId]),
      tx.query<EventRow & { is_head: boolean }>(
        `(SELECT ${EVENT_COLUMNS}, false AS is_head FROM events WHERE event_id = ANY($1::uuid[]) AND project_id = $3::uuid ORDER BY position)
         UNION ALL
         (SELECT ${EVENT_COLUMNS}, true AS is_head FROM events WHERE project_id = $3::uuid AND stream_id = $2 ORDER BY stream_version DESC LIMIT 1)`,
        [prepared.map((p) => p.eventId), streamId, opts.projectId],
      ),
    ]);
    // No head in this project: a new stream, or another project's (a stream belongs to one project), looked for
    // in every partition. Only a stream's first append pays for this read.
    if (!found.some((r) => r.is_head)) {
      const elsewhere = await tx.query<EventRow & { is_head: boolean }>(`SELECT ${EVENT_COLUMNS}, true AS is_head FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1`, [streamId]);
      found.push(...elsewhere);
    }
    const duplicate = await this.findDuplicate(tx, streamId, prepared, opts.sameEvent, found.filter((r) => !r.is_head));
    if (duplicate) return duplicate;
    const head = found.find((r) => r.is_head);
    const current = head?.stream_version ?? 0;
    if (opts.expectedVersion !== 'any' && opts.expectedVersion !== current) {
      throw new ConcurrencyError(streamId, opts.expectedVersion, current);
    }
    if (head && head.project_id !== opts.projectId) {
      throw new ValidationError(`stream ${streamId} belongs to another project`);
    }
    if (prepared.some((p) => p.chunks) && !streamId.startsWith('run-')) throw new ValidationError(`metrics belong to a run stream, not ${streamId}`);
    await opts.check?.(tx);

    let prevHash = head?.hash ?? GENESIS_HASH;
    const recordedAt = new Date();
    const stored: StoredEvent[] = [];
    const hashes: string[] = [];
    const prevHashes: string[] = [];
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
      stored.push({ ...base, position: 0, prevHash, hash } as StoredEvent);
      prevHashes.push(prevHash);
      hashes.push(hash);
      prevHash = hash;
    }
    // The transaction's first write, in one statement: its id and its positions, handed out in one order
    // (see SETTLED), the events at those positions, and the notification sent at commit.
    const inserted = await tx.query<{ position: number }>(
      `WITH r AS (SELECT pedigree_reserve_positions($13) AS first),
       ins AS (
         INSERT INTO events (position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
         SELECT r.first + u.o - 1, $1, v, id, $2::uuid, t, sv, d::jsonb, m::jsonb, $3, ph, h
         FROM r, unnest($4::int4[], $5::uuid[], $6::text[], $7::int4[], $8::text[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY AS u(v, id, t, sv, d, m, ph, h, o)
         RETURNING position, event_id),
       ids AS (INSERT INTO event_ids (event_id, project_id, position) SELECT event_id, $2::uuid, position FROM ins)
       SELECT position, (SELECT pg_notify($12, max(position)::text) FROM ins) IS NULL AS notified FROM ins ORDER BY position`,
      [
        streamId,
        opts.projectId,
        recordedAt,
        stored.map((e) => e.streamVersion),
        prepared.map((p) => p.eventId),
        prepared.map((p) => p.type),
        prepared.map((p) => p.schemaVersion),
        prepared.map((p) => p.dataJson),
        prepared.map((p) => p.metadataJson),
        prevHashes,
        hashes,
        NOTIFY_CHANNEL,
        prepared.length,
      ],
    );
    const first = Number(inserted[0]!.position);
    stored.forEach((e, i) => ((e as { position: number }).position = first + i));
    // The chunks and the projections' writes depend on the positions only, not on each other: sent together
    // (one round trip fewer; the server runs them in the order sent, and the first error fails the append).
    await Promise.all([
      insertChunks(tx, streamId, opts.projectId, prepared, first),
      (async () => {
        for (const projection of this.projections) await projection.apply(tx, stored);
      })(),
    ]);
    const last = stored[stored.length - 1]!;
    return { streamId, version: last.streamVersion, positions: stored.map((e) => e.position), eventIds: stored.map((e) => e.eventId), duplicate: false };
  }

  /** A retried append: every id stored already, as the same events on the same stream. */
  private async findDuplicate(q: Queryable, streamId: string, prepared: Prepared[], sameEvent?: AppendOptions['sameEvent'], stored?: EventRow[]): Promise<AppendResult | null> {
    const rows = stored ?? (await q.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[]) ORDER BY position`, [prepared.map((p) => p.eventId)]));
    if (rows.length === 0) return null;
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    for (const [i, p] of prepared.entries()) {
      const r = byId.get(p.eventId);
      if (!r) throw new IdempotencyError(`some of these event ids are stored and some are not (e.g. ${p.eventId} is new): a retry must resend the same events`);
      const sameData = canonicalJson(r.data) === p.dataJson || (sameEvent !== undefined && sameEvent(i, hasChunks(r) ? { points: (await readChunkPoints(q, [r])).get(r.position) } : r.data));
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

  /**
   * Whether an event with this id is stored, for a caller whose retry would propose different events: one index
   * probe, in the one partition of event_ids the id hashes to (events would probe each of its partitions).
   */
  async hasEvent(eventId: string): Promise<boolean> {
    if (!UUID.safeParse(eventId).success) return false;
    const [row] = await this.db.query('SELECT 1 FROM event_ids WHERE event_id = $1::uuid', [eventId.toLowerCase()]);
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
    return readEvents(this.db, rows);
  }

  /**
   * Events after `afterPosition` in global order: only settled ones (see
   * SETTLED), so a follower that asks again after the last position it got
   * never skips an event that commits later. An event appears here once its
   * transaction and every one that began before it have ended.
   */
  async readAll(opts: { afterPosition?: number; limit?: number; projectId?: string; streamId?: string } = {}): Promise<StoredEvent[]> {
    const where = ['position > $1'];
    const params: unknown[] = [opts.afterPosition ?? 0];
    if (opts.projectId) where.push(`project_id = $${params.push(opts.projectId)}`);
    if (opts.streamId) where.push(`stream_id = $${params.push(opts.streamId)}`);
    // Unsettled events are read too (the bound is an InitPlan, evaluated once), so that a held-back read is seen and asked again.
    const sql = `SELECT ${EVENT_COLUMNS}, ${SETTLED} AS settled, ${UNBLOCKED} AS unblocked
      FROM events WHERE ${where.join(' AND ')} ORDER BY position LIMIT $${params.push(opts.limit ?? 1000)}`;
    const rows = await settledRead(() => this.db.query<EventRow & { settled: boolean; unblocked: boolean }>(sql, params), (rs) => rs.some((r) => !r.settled && r.unblocked));
    // Positions rise with transaction ids, so the settled events are a prefix.
    const held = rows.findIndex((r) => !r.settled);
    return readEvents(this.db, (held < 0 ? rows : rows.slice(0, held)).map(({ settled: _, unblocked: __, ...row }) => row));
  }

  /** The last settled position (see SETTLED): a follower that starts after it misses nothing that commits later. */
  async lastPosition(): Promise<number> {
    const [row] = await settledRead(
      () =>
        this.db.query<{ p: number | null; unblocked: number | null }>(
          `SELECT (SELECT max(position) FROM events WHERE ${SETTLED}) AS p, (SELECT max(position) FROM events WHERE ${UNBLOCKED}) AS unblocked`,
        ),
      (rs) => (rs[0]?.unblocked ?? 0) > (rs[0]?.p ?? 0),
    );
    return row?.p ?? 0;
  }
}

/** Reads of the settled log (readAll, lastPosition) ask again at once at most this many times. */
const SETTLED_RETRIES = 5;

/**
 * A read of the settled log, asked again (a fresh snapshot each time) while
 * `held` finds committed events that SETTLED held back on a transaction that
 * ended between the statement's snapshot and its read of the lock table
 * (SETTLED counts it, not knowing whether it appended; see APPENDING_BELOW).
 * The next statement no longer sees it running, so a caller that has just
 * appended reads its own events back. Events held by a transaction still
 * appending are not asked again for. The last read is returned.
 */
async function settledRead<R>(read: () => Promise<R[]>, held: (rows: R[]) => boolean): Promise<R[]> {
  for (let attempt = 0; ; attempt++) {
    const rows = await read();
    if (attempt === SETTLED_RETRIES || !held(rows)) return rows;
  }
}

/** Columns of a metric_chunks row as appends write it, in order. */
const CHUNK_INSERT_COLUMNS = 'position, idx, project_id, run_id, key, n, first_step, last_step, min, max, last_value, steps, vals, times, blocks, digest, stride';
const CHUNK_INSERT_WIDTH = CHUNK_INSERT_COLUMNS.split(',').length;

/** Rows per INSERT: a statement takes at most 65,534 parameters (postgres.js; PostgreSQL 65,535). */
const CHUNK_INSERT_ROWS = Math.floor(65_534 / CHUNK_INSERT_WIDTH);

/**
 * The chunks of an append's metric batches, in one statement (a batch has one
 * row per metric key; more than CHUNK_INSERT_ROWS keys take more). The
 * columns go as base64 text that the database decodes (`decode(…, 'base64')`):
 * the drivers send a bytea parameter as hex, twice its bytes, and PGlite took
 * a 10,000-point batch ~2× slower so (bench/ingest.ts, embedded line).
 */
async function insertChunks(tx: Queryable, streamId: string, projectId: string, prepared: readonly Prepared[], first: number): Promise<void> {
  const rows: unknown[][] = [];
  prepared.forEach((p, i) =>
    p.chunks?.forEach((c, idx) => {
      // Summaries as text: NaN and ±Infinity are float8 input as PostgreSQL spells them.
      const { steps, vals, times, blocks } = c.columns;
      rows.push([first + i, idx, projectId, streamId.slice(4), c.key, c.n, c.firstStep, c.lastStep, String(c.min), String(c.max), String(c.lastValue), steps.toString('base64'), vals.toString('base64'), times.toString('base64'), blocks.toString('base64'), c.digest, c.stride]);
    }),
  );
  for (let at = 0; at < rows.length; at += CHUNK_INSERT_ROWS) {
    const group = rows.slice(at, at + CHUNK_INSERT_ROWS);
    const values = group.map((_, r) => `(${CHUNK_PARAM_TYPES.map((type, j) => (type === BASE64 ? `decode($${r * CHUNK_INSERT_WIDTH + j + 1}::text, 'base64')` : `$${r * CHUNK_INSERT_WIDTH + j + 1}${type}`)).join(', ')})`);
    await tx.query(`INSERT INTO metric_chunks (${CHUNK_INSERT_COLUMNS}) VALUES ${values.join(', ')}`, group.flat());
  }
}

/** Each column's parameter type, spelled out (the driver need not infer them); BASE64: bytea sent as base64 text. */
const BASE64 = 'base64';
const CHUNK_PARAM_TYPES = ['::int8', '::int4', '::uuid', '::uuid', '::text', '::int4', '::int8', '::int8', '::float8', '::float8', '::float8', BASE64, BASE64, BASE64, BASE64, '::text', '::int8'];
