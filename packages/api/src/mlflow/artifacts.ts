import { MAX_PATH } from '@pedigree/ledger';
import { nameUuid, type RunView } from '@pedigree/lineage';
import { drainBody, FileStore, FileTooLargeError, UploadIncompleteError, type FileStoreSettings } from '../files.ts';
import { serverState } from '../http.ts';
import { invalid, MlflowError, notFound, toMlflowError } from './errors.ts';
import { authenticate } from './auth.ts';
import { decodePageToken, encodePageToken } from './search.ts';
import { runOf } from './lookup.ts';
import type { Call } from './wire.ts';
import { optionalString, queryBody, type Body } from './wire.ts';

/**
 * MLflow's artifact proxy (mlflow/protos/mlflow_artifacts.proto), what the
 * Python client calls for a run whose artifact_uri is
 * `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts`:
 *
 *   PUT    /api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/artifacts/<path>   body = the file's bytes → {}
 *   GET    /api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/artifacts/<path>   → the bytes
 *   GET    /api/2.0/mlflow-artifacts/artifacts?path=<exp>/<run>/artifacts[/<dir>]
 *          → {"files": [{"path": <name in dir>, "is_dir", "file_size" (files only)}]}
 *   DELETE → refused: Pedigree removes nothing.
 *
 * and the tracking API's `GET artifacts/list` (listRunArtifacts). A file's
 * bytes go to the content-addressed FileStore; what the run uploaded is the
 * event FileUploaded (path, digest, size), so the audit log and the lineage
 * graph show it. Paths are names in the run's listing, never file-system paths.
 */
export const MLFLOW_ARTIFACTS_PREFIX = '/api/2.0/mlflow-artifacts/artifacts';

/** Entries per page of `artifacts/list`. */
const LIST_PAGE_SIZE = 1000;
/** How long the rest of a refused (over-limit) upload is read and dropped, so that the client reads the 413 (nginx's lingering close does the same). */
const DRAIN_MS = 30_000;

const stores = new Map<string, FileStore>();
function fileStore(settings: FileStoreSettings): FileStore {
  const key = `${settings.dir}\u0000${settings.maxBytes}`;
  let store = stores.get(key);
  if (!store) stores.set(key, (store = new FileStore(settings)));
  return store;
}

function errorResponse(err: MlflowError, headers?: Record<string, string>): Response {
  return Response.json({ error_code: err.code, message: err.message }, { status: err.status, headers });
}

/**
 * A path under a run's artifact root, checked as MLflow's validate_path_is_safe
 * does and stricter: segments separated by `/`, none empty, `.` or `..`; no
 * backslash, NUL or other control character; not absolute, no drive letter.
 * Returns the segments ([] for the root itself when `allowRoot`).
 */
export function artifactPath(raw: string, opts: { allowRoot?: boolean; trailingSlash?: boolean } = {}): string[] {
  const bad = (why: string) => invalid(`Invalid path ${JSON.stringify(raw.slice(0, 200))}: ${why}`);
  if (raw.length > MAX_PATH) throw bad(`longer than ${MAX_PATH} characters`);
  let p = raw;
  if (opts.trailingSlash) p = p.replace(/\/+$/, '');
  if (p === '') {
    if (opts.allowRoot) return [];
    throw bad('empty');
  }
  if (/[\u0000-\u001f\u007f]/.test(p)) throw bad('control characters (NUL, newline, …) are not allowed');
  if (p.includes('\\')) throw bad('backslashes are not allowed; separate directories with /');
  if (p.startsWith('/')) throw bad('absolute paths are not allowed');
  if (/^[a-z]:/i.test(p)) throw bad('drive letters are not allowed');
  const segments = p.split('/');
  for (const s of segments) {
    if (s === '') throw bad('empty path segments (//) are not allowed');
    if (s === '.' || s === '..') throw bad(`'${s}' segments are not allowed`);
  }
  return segments;
}

/** The run, through the caller's access (another project's run: PERMISSION_DENIED; unknown: RESOURCE_DOES_NOT_EXIST). */
const runFor = (call: Pick<Call, 'ctx' | 'access'>, ref: string): Promise<RunView> => runOf({ ...call, body: {} }, ref);

interface Located {
  run: RunView;
  /** Segments under the run's artifact root. */
  segments: string[];
}

/** `<experiment_id>/<run_id>/artifacts[/<path>]`, as the proxy's URLs and `path` parameter name a run's artifacts. */
function splitProxyPath(raw: string, opts: { allowRoot: boolean; trailingSlash?: boolean }): { experimentId: string; runRef: string; segments: string[] } {
  const all = artifactPath(raw, { trailingSlash: opts.trailingSlash });
  const [experimentId, runRef, artifacts, ...segments] = all;
  if (!experimentId || !runRef || artifacts !== 'artifacts') {
    throw invalid(`Invalid path ${JSON.stringify(raw.slice(0, 200))}: Pedigree serves a run's artifacts at <experiment_id>/<run_id>/artifacts/<path> (the run's artifact_uri)`);
  }
  if (!opts.allowRoot && segments.length === 0) throw invalid(`Invalid path ${JSON.stringify(raw.slice(0, 200))}: name a file under the run's artifacts/`);
  return { experimentId, runRef, segments };
}

async function locate(call: Pick<Call, 'ctx' | 'access'>, parts: { experimentId: string; runRef: string; segments: string[] }): Promise<Located> {
  const run = await runFor(call, parts.runRef);
  if (parts.experimentId.toLowerCase() !== run.projectId) throw notFound(`Run with id=${parts.runRef} not found in experiment ${parts.experimentId}`);
  return { run, segments: parts.segments };
}

interface FileEntry {
  /** The name inside the listed directory. */
  name: string;
  isDir: boolean;
  bytes?: number;
}

/**
 * The direct children of `dir` (segments) among a run's files: files with
 * their sizes, and the directories their paths imply. A file, or a directory
 * with nothing in it, lists as empty (what MLflow's clients expect: a
 * non-empty listing is how they tell a directory).
 */
async function children(call: Pick<Call, 'ctx'>, runId: string, dir: string[]): Promise<FileEntry[]> {
  const prefix = dir.length ? `${dir.join('/')}/` : '';
  const files = await call.ctx.pedigree.lineage.runFiles(runId, dir.length ? { under: dir.join('/') } : {});
  const entries = new Map<string, FileEntry>();
  for (const f of files) {
    // runFiles' `under` is a LIKE prefix; checked again here so that `_` and `%` in a name mean themselves.
    if (!f.path.startsWith(prefix)) continue;
    const rest = f.path.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash < 0) entries.set(rest, { name: rest, isDir: false, bytes: f.bytes });
    else if (!entries.has(rest.slice(0, slash))) entries.set(rest.slice(0, slash), { name: rest.slice(0, slash), isDir: true });
  }
  return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A FileInfo as MLflow's server writes it: file_size only for files. */
const fileInfo = (path: string, e: FileEntry): Body => (e.isDir ? { path, is_dir: true } : { path, is_dir: false, file_size: e.bytes });

// ---- the tracking API's artifacts/list ---------------------------------------------

/**
 * `GET /api/2.0/mlflow/artifacts/list?run_id=…&path=…&page_token=…`
 * → `{root_uri, files: [{path (from the run's root), is_dir, file_size}], next_page_token?}`.
 */
export async function listRunArtifacts(call: Call): Promise<Body> {
  const ref = optionalString(call.body, 'run_id') ?? optionalString(call.body, 'run_uuid');
  if (!ref) throw invalid(`Missing value for required parameter 'run_id'.`);
  const dir = artifactPath(optionalString(call.body, 'path', MAX_PATH) ?? '', { allowRoot: true, trailingSlash: true });
  const offset = decodePageToken(optionalString(call.body, 'page_token'));
  const run = await runFor(call, ref);
  const all = await children(call, run.id, dir);
  const page = all.slice(offset, offset + LIST_PAGE_SIZE);
  const base = dir.length ? `${dir.join('/')}/` : '';
  return {
    root_uri: `mlflow-artifacts:/${run.projectId}/${run.id}/artifacts`,
    files: page.map((e) => fileInfo(base + e.name, e)),
    ...(offset + LIST_PAGE_SIZE < all.length ? { next_page_token: encodePageToken(offset + LIST_PAGE_SIZE) } : {}),
  };
}

// ---- the proxy ------------------------------------------------------------------------

/** Serves MLflow's artifact proxy over the Fetch API: what the Next.js route handler exports as GET, PUT and DELETE. */
export async function handleMlflowArtifactRequest(req: Request): Promise<Response> {
  const url = new URL(req.url);
  const at = url.pathname.indexOf(MLFLOW_ARTIFACTS_PREFIX);
  const rest = at >= 0 ? url.pathname.slice(at + MLFLOW_ARTIFACTS_PREFIX.length) : '';
  try {
    if (rest !== '' && rest !== '/' && !rest.startsWith('/')) throw new MlflowError('ENDPOINT_NOT_FOUND', `no MLflow artifact endpoint ${req.method} ${url.pathname}`);
    let raw: string;
    try {
      raw = decodeURIComponent(rest.replace(/^\//, ''));
    } catch {
      throw invalid(`Invalid path: bad percent-encoding in ${JSON.stringify(url.pathname.slice(0, 200))}`);
    }
    switch (req.method) {
      case 'GET':
        return raw === '' ? await list(req, url) : await download(req, raw);
      case 'PUT':
        return await upload(req, raw);
      case 'DELETE':
        return errorResponse(
          new MlflowError('BAD_REQUEST', 'Pedigree keeps every file a run uploaded (each upload is an event in its audit log): artifacts cannot be deleted. Delete the run (runs/delete) to hide it, or upload a new version under the same path.', 405),
          { allow: 'GET, PUT' },
        );
      default:
        return errorResponse(new MlflowError('BAD_REQUEST', `${req.method} is not allowed here; use GET or PUT`, 405), { allow: 'GET, PUT' });
    }
  } catch (err) {
    const mapped = toMlflowError(err);
    if (mapped.code === 'INTERNAL_ERROR') console.error(`pedigree mlflow-artifacts: ${req.method} ${url.pathname}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return errorResponse(mapped);
  }
}

async function list(req: Request, url: URL): Promise<Response> {
  const path = optionalString(queryBody(url), 'path', MAX_PATH + 200);
  if (!path) throw invalid(`Missing value for required parameter 'path': list <experiment_id>/<run_id>/artifacts[/<dir>] (the run's artifact_uri)`);
  const parts = splitProxyPath(path, { allowRoot: true, trailingSlash: true });
  const call = await authenticate(req, 'mlflow');
  const { run, segments } = await locate(call, parts);
  const entries = await children(call, run.id, segments);
  return Response.json({ files: entries.map((e) => fileInfo(e.name, e)) });
}

async function download(req: Request, raw: string): Promise<Response> {
  const parts = splitProxyPath(raw, { allowRoot: false });
  const call = await authenticate(req, 'mlflow');
  const { run, segments } = await locate(call, parts);
  const path = segments.join('/');
  const [file] = (await call.ctx.pedigree.lineage.runFiles(run.id, { under: segments.slice(0, -1).join('/') || undefined })).filter((f) => f.path === path);
  if (!file) {
    const isDir = (await children(call, run.id, segments)).length > 0;
    throw notFound(isDir ? `${path} is a directory of run ${run.id}'s artifacts; list it (GET ${MLFLOW_ARTIFACTS_PREFIX}?path=…)` : `No artifact ${path} in run ${run.id}`);
  }
  const { files } = await serverState();
  const opened = await fileStore(files).open(file.digest, file.bytes);
  if (!opened) throw notFound(`The bytes of ${path} (${file.digest}) are not in this server's artifact store (${files.dir}); was PEDIGREE_ARTIFACTS_DIR changed?`);
  const name = segments[segments.length - 1]!;
  return new Response(opened.body, {
    headers: {
      'content-type': mimeType(name),
      'content-length': String(opened.bytes),
      // As MLflow's server sends artifacts: never rendered by a browser on this origin.
      'content-disposition': `attachment; filename="${name.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(name)}`,
      'x-content-type-options': 'nosniff',
      etag: `"${file.digest}"`,
    },
  });
}

async function upload(req: Request, raw: string): Promise<Response> {
  const parts = splitProxyPath(raw, { allowRoot: false });
  const call = await authenticate(req, 'mlflow');
  const { run, segments } = await locate(call, parts);
  const path = segments.join('/');
  if (run.lifecycle === 'deleted') throw invalid(`The run ${run.id} must be in the 'active' state. Current state is deleted.`);
  const { files } = await serverState();
  const declared = req.headers.get('content-length');
  const expectedBytes = declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined;
  let stored;
  try {
    stored = await fileStore(files).put(req.body, { expectedBytes, signal: req.signal });
  } catch (err) {
    if (err instanceof FileTooLargeError) {
      await drainBody(req.body, DRAIN_MS);
      throw new MlflowError('BAD_REQUEST', `${path}: ${err.message}; nothing was stored`, 413);
    }
    if (err instanceof UploadIncompleteError) throw new MlflowError('BAD_REQUEST', `${path}: ${err.message}; nothing was stored`);
    if (req.signal.aborted) throw new MlflowError('BAD_REQUEST', `${path}: the upload was interrupted; nothing was stored`);
    throw err;
  }
  // The same bytes again under the same path change nothing (a client's retry after a lost reply).
  const [current] = (await call.ctx.pedigree.lineage.runFiles(run.id, { under: segments.slice(0, -1).join('/') || undefined })).filter((f) => f.path === path);
  if (current?.digest !== stored.digest) {
    // Fixed by what it replaces too: A, then B, then A again under one path is three uploads; a retry racing its first attempt is one.
    const eventId = nameUuid('mlflow-artifact', run.id, path, stored.digest, current?.digest ?? '');
    await call.ctx.pedigree.tracker.recordFile(run.id, { path, digest: stored.digest, bytes: stored.bytes }, { eventId, metadata: { actor: call.ctx.actor } });
  }
  return Response.json({});
}

/** What MLflow's server answers for common artifact types (mlflow/utils/mime_type_utils.py); anything else is bytes. */
const MIME_TYPES: Record<string, string> = {
  txt: 'text/plain',
  log: 'text/plain',
  md: 'text/markdown',
  py: 'text/x-python',
  mlmodel: 'text/plain',
  mlproject: 'text/plain',
  json: 'application/json',
  jsonl: 'application/x-ndjson',
  yaml: 'text/yaml',
  yml: 'text/yaml',
  csv: 'text/csv',
  tsv: 'text/tab-separated-values',
  html: 'text/html',
  htm: 'text/html',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
  pkl: 'application/octet-stream',
  pt: 'application/octet-stream',
  safetensors: 'application/octet-stream',
  parquet: 'application/vnd.apache.parquet',
  gz: 'application/gzip',
  zip: 'application/zip',
};

export function mimeType(name: string): string {
  const dot = name.lastIndexOf('.');
  const ext = (dot > 0 ? name.slice(dot + 1) : name).toLowerCase();
  return MIME_TYPES[ext] ?? 'application/octet-stream';
}
