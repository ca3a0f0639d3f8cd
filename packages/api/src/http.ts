import { defaultReadUrls, defaultTarget } from '@pedigree/db';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { jsonTextDepth, MAX_JSON_DEPTH } from '@pedigree/ledger';
import { TRPCError } from '@trpc/server';
import { fetchRequestHandler } from '@trpc/server/adapters/fetch';
import { apiKeyFromHeaders, createContext, type AuthMode } from './context.ts';
import { CLOSE_AFTER } from './errors.ts';
import { readServerEnv, type ServerEnv } from './env.ts';
import { fileStoreSettings, type FileStoreSettings } from './files.ts';
import { minPositionOf, POSITION_HEADER, ReadRouting, recordingWrites } from './reads.ts';
import { appRouter } from './router.ts';

/** The tRPC endpoint, as mounted by the Next.js app (apps/web/app/api/trpc/[trpc]/route.ts). */
export const TRPC_ENDPOINT = '/api/trpc';
/** Larger request bodies get 413 before they are parsed: 50,000 points fit in about 5 MB. */
export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

export interface ServerState {
  pedigree: Pedigree;
  authMode: AuthMode;
  /** Where uploaded files (MLflow's artifacts) are kept and how large one may be: see fileStoreSettings. */
  files: FileStoreSettings;
  /** Streaming replicas the tRPC queries and subscriptions read from (see reads.ts); none: everything on `pedigree`. */
  reads?: ReadRouting;
}

const STATE = Symbol.for('pedigree.api.server');
type Global = typeof globalThis & { [STATE]?: Promise<ServerState> };

/**
 * Hands the store to the HTTP handler. `pedigree start` opens the store and
 * calls this before it starts Next.js in the same process; the route handler,
 * bundled by Next, finds it through a process-wide symbol.
 */
export function installServer(state: Omit<ServerState, 'files'> & { files?: FileStoreSettings }): void {
  const files = state.files ?? fileStoreSettings(state.pedigree.database.db);
  (globalThis as Global)[STATE] = Promise.resolve({ ...state, files });
}

export function uninstallServer(): void {
  delete (globalThis as Global)[STATE];
}

/** Embedded stores are single-user and open by default; a PostgreSQL server needs keys. PEDIGREE_AUTH=open|keys overrides. */
export function defaultAuthMode(kind: 'pglite' | 'postgres', env: Pick<ServerEnv, 'auth'> = readServerEnv()): AuthMode {
  return env.auth ?? (kind === 'pglite' ? 'open' : 'keys');
}

/** The installed server, or (under `next dev`) one opened from the environment on first use. */
export function serverState(): Promise<ServerState> {
  const g = globalThis as Global;
  g[STATE] ??= (async () => {
    const env = readServerEnv();
    const pedigree = await openPedigree(defaultTarget());
    const { db } = pedigree.database;
    const readUrls = defaultReadUrls();
    const reads = readUrls.length ? await ReadRouting.open(pedigree, readUrls) : undefined;
    return { pedigree, authMode: defaultAuthMode(db.kind, env), files: fileStoreSettings(db, env), reads };
  })();
  return g[STATE];
}

function jsonError(status: number, code: string, message: string): Response {
  return Response.json({ error: { json: { message, code: -32600, data: { code, httpStatus: status } } } }, { status, headers: status === 413 ? CLOSE_AFTER : undefined });
}


/** Allowing for the envelope (`{"json": {"values": …}}`), values may nest MAX_JSON_DEPTH levels. */
const TOO_DEEP = `invalid input: JSON nested more than ${MAX_JSON_DEPTH} levels deep`;

/** Reads a request body up to the limit; null when it is over. */
export async function readLimited(req: Request, limit: number): Promise<Uint8Array | null> {
  const declared = Number(req.headers.get('content-length') ?? NaN);
  if (!req.body) return declared > limit ? null : new Uint8Array();
  const reader = req.body.getReader();
  if (declared > limit) {
    await drain(reader);
    return null;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await drain(reader);
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** How long, and how much, of a refused body is read and dropped (see drain). */
const DRAIN_MS = 5_000;
const DRAIN_BYTES = 256 * 1024 * 1024;

/**
 * Reads the rest of a refused body and drops it, for a while: a client that
 * sends its whole body before it reads the answer (most do) would otherwise
 * see its upload cut off and a reset instead of the 413 (nginx's lingering
 * close does the same). The 413 then closes the connection (CLOSE_AFTER).
 */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  const deadline = Date.now() + DRAIN_MS;
  let dropped = 0;
  try {
    while (Date.now() < deadline && dropped < DRAIN_BYTES) {
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([reader.read(), new Promise<null>((r) => (timer = setTimeout(() => r(null), deadline - Date.now())))]);
      clearTimeout(timer);
      if (!next || next.done) break;
      dropped += next.value.byteLength;
    }
  } catch {
    // the client went away: nothing left to drain
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/**
 * What a request carried in its URL (a subscription's connection params): a
 * ticket, for subscriptions only. A key there is refused, whatever else the
 * request carries: URLs end up in proxy logs and browser histories.
 */
function urlCredentials(params: Record<string, string | undefined> | null, type: string): { ticket?: string; refused?: string } {
  if (!params) return {};
  if (params.apiKey !== undefined || params.key !== undefined) {
    return { refused: 'API keys are not accepted in URLs (connection params): send the key as `Authorization: Bearer <key>`, and for live updates POST system.ticket and pass { ticket } instead' };
  }
  if (params.ticket === undefined) return {};
  if (type !== 'subscription') return { refused: 'a ticket opens live updates (subscriptions) only; send the key as `Authorization: Bearer <key>`' };
  return { ticket: params.ticket };
}

/** Serves the tRPC router over the Fetch API: what the Next.js route handler exports as GET and POST. */
export async function handleTrpcRequest(req: Request): Promise<Response> {
  let request = req;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const body = await readLimited(req, MAX_REQUEST_BYTES);
    if (!body) return jsonError(413, 'PAYLOAD_TOO_LARGE', `request body over ${MAX_REQUEST_BYTES} bytes; send metrics in batches of at most 50,000 points`);
    if (jsonTextDepth(body, MAX_JSON_DEPTH + 4) > MAX_JSON_DEPTH + 4) return jsonError(400, 'BAD_REQUEST', TOO_DEEP);
    request = new Request(req.url, { method: req.method, headers: req.headers, body: new Uint8Array(body) });
  } else {
    const input = new URL(req.url).searchParams.get('input');
    if (input && jsonTextDepth(input, MAX_JSON_DEPTH + 4) > MAX_JSON_DEPTH + 4) return jsonError(400, 'BAD_REQUEST', TOO_DEEP);
  }
  const state = await serverState();
  // The highest position this request's writes appended: the response reports it, for the caller's next reads.
  const written = { position: 0 };
  return fetchRequestHandler({
    endpoint: TRPC_ENDPOINT,
    req: request,
    router: appRouter,
    allowMethodOverride: false,
    responseMeta: () => (written.position > 0 ? { headers: { [POSITION_HEADER]: String(written.position) } } : {}),
    createContext: async ({ req: r, info }) =>
      createContext({
        pedigree: await pedigreeFor(state, info.type, r.headers, written),
        authMode: state.authMode,
        apiKey: apiKeyFromHeaders(r.headers),
        ...urlCredentials(info.connectionParams, info.type),
        client: r.headers.get('x-pedigree-client'),
      }),
    onError({ error, path }) {
      if (error.code === 'INTERNAL_SERVER_ERROR') console.error(`pedigree api: ${path ?? '?'}: ${error.cause instanceof Error ? (error.cause.stack ?? error.cause.message) : error.message}`);
    },
  });
}

/**
 * Which store a request runs on: a write (mutation) on the primary, noting
 * what it appends; a query or subscription on a replica, if there are any
 * (one that has the position the request carries, else the primary); a
 * batch of mixed kinds on the primary.
 */
async function pedigreeFor(state: ServerState, type: string, headers: Headers, written: { position: number }): Promise<Pedigree> {
  if (type === 'mutation') return recordingWrites(state.pedigree, written);
  if ((type === 'query' || type === 'subscription') && state.reads) return state.reads.forRead(minPositionOf(headers));
  return state.pedigree;
}

export { TRPCError };
