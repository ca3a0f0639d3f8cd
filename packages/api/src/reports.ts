import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { toTRPCError } from './errors.ts';
import { authenticate } from './mlflow/auth.ts';

/**
 * A report artifact's file, for the dashboard: `GET /api/reports/<artifactId>`.
 *
 * A `report` artifact (what `pedigree demo` records: results.md and its SVG
 * figures) names a file on the server's disk (`spec.path`) and the SHA-256 of
 * the bytes it had when it was recorded (`digest`). The bytes are served only
 * while they still hash to that digest: a file rewritten since is refused
 * (409), not shown as if it were the recorded one. The artifact is looked up
 * through the caller's access like every read (a key sees its project only).
 */
export const REPORTS_ENDPOINT = '/api/reports';

/** What a report's `spec.format` may be to be served, and as what. */
export const REPORT_FORMATS = {
  svg: { contentType: 'image/svg+xml', extensions: ['.svg'] },
  markdown: { contentType: 'text/markdown; charset=utf-8', extensions: ['.md', '.markdown'] },
} as const;
export type ReportFormat = keyof typeof REPORT_FORMATS;

const isReportFormat = (format: unknown): format is ReportFormat => typeof format === 'string' && Object.hasOwn(REPORT_FORMATS, format);

/** The demo's files are a few kilobytes; this only keeps a wrong path from reading a huge file into memory. */
export const MAX_REPORT_BYTES = 16 * 1024 * 1024;

const SHA256 = /^sha256:([0-9a-f]{64})$/;

/**
 * Nothing a served file says can run: no script, no plugin, no form, no
 * fetch; the SVG's own `<style>` (its light and dark colours) may apply. The
 * dashboard shows figures through `<img>`, where an SVG cannot run script
 * anyway; this covers the file opened on its own.
 */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

class ReportError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Serves a report file over the Fetch API: what the Next.js route handler exports as GET. */
export async function handleReportRequest(req: Request): Promise<Response> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return errorResponse(405, `use GET`, { allow: 'GET, HEAD' });
  try {
    const { bytes, format, name, digest } = await reportFile(req);
    const headers = {
      'content-type': REPORT_FORMATS[format].contentType,
      'content-length': String(bytes.byteLength),
      'content-disposition': `inline; filename="${name.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(name)}`,
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      // Checked against the digest on every request: a cached copy could outlive the file.
      'cache-control': 'private, no-store',
      etag: `"${digest}"`,
    };
    return new Response(req.method === 'HEAD' ? null : new Uint8Array(bytes), { status: 200, headers });
  } catch (err) {
    if (err instanceof ReportError) return errorResponse(err.status, err.message);
    const mapped = toTRPCError(err);
    if (mapped.code === 'INTERNAL_SERVER_ERROR') console.error(`pedigree reports: ${new URL(req.url).pathname}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return errorResponse(getHTTPStatusCodeFromError(mapped), mapped.message);
  }
}

async function reportFile(req: Request): Promise<{ bytes: Buffer; format: ReportFormat; name: string; digest: string }> {
  const { pathname } = new URL(req.url);
  const at = pathname.indexOf(`${REPORTS_ENDPOINT}/`);
  // An artifact id is a UUID: nothing in it is percent-encoded, and anything else is refused as not one.
  const artifactId = at >= 0 ? pathname.slice(at + REPORTS_ENDPOINT.length + 1) : '';
  const { ctx, access } = await authenticate(req, 'dashboard');
  const { id } = await access.artifact(artifactId);
  const artifact = await ctx.pedigree.lineage.artifact(id);
  const what = `artifact ${artifact.name} (${artifact.id})`;

  const format = artifact.spec.format;
  if (artifact.kind !== 'report') throw new ReportError(422, `${what} is a ${artifact.kind}, not a report: only report files (${Object.keys(REPORT_FORMATS).join(', ')}) are served here`);
  if (!isReportFormat(format)) throw new ReportError(422, `${what} is a report in format ${JSON.stringify(format)}: only ${Object.keys(REPORT_FORMATS).join(' and ')} are served`);
  const file = artifact.spec.path;
  if (typeof file !== 'string' || !path.isAbsolute(file)) throw new ReportError(422, `${what} names no file (its spec.path must be an absolute path; got ${JSON.stringify(file ?? null)})`);
  if (!REPORT_FORMATS[format].extensions.some((ext) => file.toLowerCase().endsWith(ext))) {
    throw new ReportError(422, `${what} is ${format}, but its file ${file} does not end in ${REPORT_FORMATS[format].extensions.join(' or ')}`);
  }
  const recorded = SHA256.exec(artifact.digest)?.[1];
  if (!recorded) throw new ReportError(422, `${what} has digest ${artifact.digest}, not the SHA-256 of a file (sha256:<64 hex>): there is nothing to check its file against`);

  const bytes = await readSmallFile(file, what);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== recorded) {
    throw new ReportError(409, `the file changed since it was recorded: ${file} now has SHA-256 ${actual}, but ${what} recorded ${recorded}; run the demo again to record the new one`);
  }
  return { bytes, format, name: artifact.name, digest: artifact.digest };
}

/** The file's bytes; 404 when it is not there (or not a file), 413 past MAX_REPORT_BYTES. */
async function readSmallFile(file: string, what: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ReportError(404, `the file of ${what} is gone: ${file} does not exist`);
    throw err;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new ReportError(404, `the file of ${what} is gone: ${file} is not a file`);
    if (stat.size > MAX_REPORT_BYTES) throw new ReportError(413, `the file of ${what}, ${file}, is ${stat.size} bytes; report files over ${MAX_REPORT_BYTES} bytes are not served`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function errorResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  return Response.json({ error: message }, { status, headers: { 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', ...headers } });
}
