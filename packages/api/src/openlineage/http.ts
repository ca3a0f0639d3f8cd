import { jsonTextDepth, MAX_JSON_DEPTH } from '@pedigree/ledger';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { MAX_NAME } from '@pedigree/ledger';
import { TRPCError } from '@trpc/server';
import type { Access } from '../access.ts';
import type { Context } from '../context.ts';
import { MAX_REQUEST_BYTES, readLimited } from '../http.ts';
import { authenticate } from '../mlflow/auth.ts';
import { errorResponse, OpenLineageError, toOpenLineageError } from './errors.ts';
import { exportOpenLineage } from './export.ts';
import { ingestRunEvent } from './ingest.ts';
import { parseRunEvent, type ParsedRunEvent } from './wire.ts';

/** Where producers send events (OpenLineage's HTTP transport: url http://host:port, endpoint api/v1/lineage). */
export const OPENLINEAGE_ENDPOINT = '/api/v1/lineage';
export const OPENLINEAGE_EXPORT_ENDPOINT = '/api/v1/lineage/export';

const gunzipAsync = promisify(gunzip);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const tooLarge = () => new OpenLineageError(413, `request body over ${MAX_REQUEST_BYTES} bytes (after decompression too); send one event per request`);

/** The body, at most MAX_REQUEST_BYTES as sent and again once decompressed (a small gzip can inflate to gigabytes). */
async function readBody(req: Request): Promise<Uint8Array> {
  const raw = await readLimited(req, MAX_REQUEST_BYTES);
  if (!raw) throw tooLarge();
  const encoding = (req.headers.get('content-encoding') ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return raw;
  if (encoding !== 'gzip' && encoding !== 'x-gzip') throw new OpenLineageError(415, `Content-Encoding ${JSON.stringify(encoding)} is not supported; send plain JSON or gzip`);
  try {
    return await gunzipAsync(raw, { maxOutputLength: MAX_REQUEST_BYTES });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge();
    throw new OpenLineageError(400, `the body is not valid gzip (${(err as Error).message})`);
  }
}

function parseJson(bytes: Uint8Array): unknown {
  const text = new TextDecoder().decode(bytes);
  // Before anything recursive (zod, the ledger's canonical form) walks it: a deep value would overflow the stack.
  if (jsonTextDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new OpenLineageError(400, `the event nests more than ${MAX_JSON_DEPTH} levels deep`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new OpenLineageError(400, `the body is not JSON (${(err as Error).message}); send one OpenLineage RunEvent as a JSON object`);
  }
}

/**
 * The project an event goes to: `?project=` (a name or id), else the API
 * key's, else (open mode, no key) the project named like the job's namespace,
 * created when missing.
 */
async function projectFor(ctx: Context, access: Access, ref: string | null, e: ParsedRunEvent): Promise<string> {
  const name = ref ?? (ctx.key ? null : e.job.namespace);
  if (name === null) return ctx.key!.projectId;
  try {
    return (await access.project(name)).id;
  } catch (err) {
    if (!(err instanceof TRPCError && err.code === 'NOT_FOUND') || UUID.test(name)) throw err;
  }
  access.mayCreateProjects();
  if (!name.trim() || name.length > MAX_NAME) {
    throw new OpenLineageError(400, `cannot name a project ${JSON.stringify(name.slice(0, 50))}: project names are 1–${MAX_NAME} characters; pass ?project=NAME`, ref === null ? 'job.namespace' : null);
  }
  return ctx.pedigree.tracker.ensureProject(name);
}

function methodNotAllowed(allowed: string[]): Response {
  return Response.json({ error: `use ${allowed.join(' or ')}`, field: null }, { status: 405, headers: { allow: allowed.join(', ') } });
}

function fail(what: string, err: unknown): Response {
  const mapped = toOpenLineageError(err);
  if (mapped.status >= 500) console.error(`pedigree openlineage: ${what}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return errorResponse(mapped);
}

/**
 * `POST /api/v1/lineage`: one OpenLineage RunEvent per request (JSON,
 * optionally gzip-encoded), with an API key like every request. 201 when
 * something was stored, 200 for a re-sent event; 400 names the field at fault
 * and stores nothing.
 */
export async function handleOpenLineageRequest(req: Request): Promise<Response> {
  if (req.method !== 'POST') return methodNotAllowed(['POST']);
  try {
    const { ctx, access } = await authenticate(req, 'openlineage');
    const event = parseRunEvent(parseJson(await readBody(req)));
    const projectId = await projectFor(ctx, access, new URL(req.url).searchParams.get('project'), event);
    const result = await ingestRunEvent(ctx.pedigree, projectId, event, { actor: ctx.actor });
    return Response.json(
      { runId: result.runId, projectId: result.projectId, openLineageRunId: event.runId, created: result.created, duplicate: result.duplicate, events: result.events },
      { status: result.duplicate ? 200 : 201 },
    );
  } catch (err) {
    return fail('POST', err);
  }
}

/**
 * `GET /api/v1/lineage/export[?project=P]`: the lineage as OpenLineage
 * RunEvents, one JSON object per line. A key exports its project; open mode
 * without `project` exports every project.
 */
export async function handleOpenLineageExportRequest(req: Request): Promise<Response> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(['GET']);
  try {
    const { ctx, access } = await authenticate(req, 'openlineage');
    const ref = new URL(req.url).searchParams.get('project');
    const projects = ref ? [(await access.project(ref)).id] : ctx.key ? [ctx.key.projectId] : 'all';
    const headers = { 'content-type': 'application/x-ndjson; charset=utf-8' };
    if (req.method === 'HEAD') return new Response(null, { status: 200, headers });
    const events = exportOpenLineage(ctx.pedigree, { projects });
    // The first event is read before answering, so that an error there is still an HTTP error.
    const first = await events.next();
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (!first.done) controller.enqueue(encoder.encode(`${JSON.stringify(first.value)}\n`));
        else controller.close();
      },
      async pull(controller) {
        try {
          const next = await events.next();
          if (next.done) controller.close();
          else controller.enqueue(encoder.encode(`${JSON.stringify(next.value)}\n`));
        } catch (err) {
          console.error(`pedigree openlineage: export: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          controller.error(err);
        }
      },
      async cancel() {
        await events.return(undefined);
      },
    });
    return new Response(body, { status: 200, headers });
  } catch (err) {
    return fail('export', err);
  }
}
