import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Db } from '@pedigree/db';
import { readServerEnv, type ServerEnv } from './env.ts';

/**
 * The bytes of the files runs upload (MLflow's artifacts), kept by content:
 * `<dir>/sha256/<first 2 hex>/<other 62 hex>`. What a run uploaded, under
 * which path, is an event (FileUploaded); this store only holds bytes, so the
 * same content uploaded twice (two paths, two runs, a retry) is stored once,
 * and a path never reaches the file system.
 */
export interface FileStoreSettings {
  /** The store's directory (absolute). */
  dir: string;
  /** The largest file accepted, in bytes. */
  maxBytes: number;
}

export const DEFAULT_MAX_ARTIFACT_BYTES = 5 * 1024 ** 3;

/** Temp files of uploads in progress; older ones were left by a process that died mid-upload. */
const TEMP_DIR = 'tmp';
const STALE_TEMP_MS = 24 * 3600_000;

/**
 * Where a server keeps files, worked out once where the server state is made:
 * PEDIGREE_ARTIFACTS_DIR if set; else `artifacts/` in the embedded store's
 * directory; else (a PostgreSQL server, or an in-memory store) in
 * `$PEDIGREE_HOME/artifacts` or `./.pedigree/artifacts` — in-memory stores
 * use a directory under the system's temp dir, since their runs vanish with
 * the process. PEDIGREE_MAX_ARTIFACT_BYTES bounds one file (default 5 GiB).
 */
export function fileStoreSettings(db: Pick<Db, 'kind' | 'location'>, env: ServerEnv = readServerEnv()): FileStoreSettings {
  const maxBytes = env.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES;
  let dir: string;
  if (env.artifactsDir) dir = env.artifactsDir;
  else if (db.kind === 'pglite' && db.location !== ':memory:') dir = path.join(db.location, 'artifacts');
  else if (db.kind === 'pglite') dir = path.join(os.tmpdir(), `pedigree-artifacts-${process.pid}`);
  else dir = path.join(env.home, 'artifacts');
  return { dir: path.resolve(dir), maxBytes };
}

/** The upload was over the limit; nothing was kept. */
export class FileTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`file over the limit of ${limit} bytes (PEDIGREE_MAX_ARTIFACT_BYTES)`);
  }
}

/** The body ended before the client said it would (a disconnect) or the request was aborted; nothing was kept. */
export class UploadIncompleteError extends Error {}

export interface StoredFile {
  /** `sha256:<64 hex>` */
  digest: string;
  bytes: number;
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

export class FileStore {
  private swept = false;

  constructor(readonly settings: FileStoreSettings) {}

  /** Where the bytes of `digest` live. */
  pathOf(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
    return path.join(this.settings.dir, 'sha256', m[1]!.slice(0, 2), m[1]!.slice(2));
  }

  /**
   * Streams a body into the store while hashing it, never holding more than
   * a chunk in memory: into a temp file beside the store, fsynced, then
   * renamed into place (atomic; an existing copy of the same content is
   * kept and the temp file dropped). Over `maxBytes`, short of
   * `expectedBytes`, aborted, or failing in any way: the temp file is
   * removed and nothing is kept. Over the limit the body is not cancelled,
   * so that the caller may drain it (see drainBody).
   */
  async put(body: ReadableStream<Uint8Array> | null, opts: { expectedBytes?: number; signal?: AbortSignal } = {}): Promise<StoredFile> {
    const { dir, maxBytes } = this.settings;
    if (opts.expectedBytes !== undefined && opts.expectedBytes > maxBytes) throw new FileTooLargeError(maxBytes);
    const tempDir = path.join(dir, TEMP_DIR);
    await fs.mkdir(tempDir, { recursive: true });
    await this.sweepOnce(tempDir);
    const temp = path.join(tempDir, `${randomUUID()}.part`);
    const file = await fs.open(temp, 'wx');
    let kept = false;
    const reader = body?.getReader();
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for (;;) {
        if (!reader) break;
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        if (bytes > maxBytes) throw new FileTooLargeError(maxBytes);
        hash.update(value);
        await writeAll(file, value);
      }
      if (opts.signal?.aborted) throw new UploadIncompleteError('the upload was aborted');
      if (opts.expectedBytes !== undefined && bytes !== opts.expectedBytes) {
        throw new UploadIncompleteError(`the body ended after ${bytes} of the ${opts.expectedBytes} bytes its content-length announced`);
      }
      await file.sync();
      await file.close();
      const digest = `sha256:${hash.digest('hex')}`;
      const target = this.pathOf(digest);
      const existing = await fs.stat(target).catch(() => null);
      if (existing?.isFile() && existing.size === bytes) {
        await fs.rm(temp, { force: true });
      } else {
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.rename(temp, target);
        await syncDir(path.dirname(target));
      }
      kept = true;
      return { digest, bytes };
    } catch (err) {
      // Over the limit, the body is left to the caller (to drain, so that its client reads the refusal); otherwise reading stops here.
      if (err instanceof FileTooLargeError) reader?.releaseLock();
      else await reader?.cancel().catch(() => {});
      throw err;
    } finally {
      if (!kept) {
        await file.close().catch(() => {});
        await fs.rm(temp, { force: true });
      }
    }
  }

  /**
   * The bytes of `digest` as a stream, with their size; null when the store
   * does not hold them. A copy of another size than the one recorded
   * (`expectedBytes`) is damaged: an error, never served.
   */
  async open(digest: string, expectedBytes?: number): Promise<{ body: ReadableStream<Uint8Array>; bytes: number } | null> {
    const file = this.pathOf(digest);
    const stat = await fs.stat(file).catch(() => null);
    if (!stat?.isFile()) return null;
    if (expectedBytes !== undefined && stat.size !== expectedBytes) throw new Error(`${file} holds ${stat.size} bytes, not the ${expectedBytes} recorded for ${digest}: the copy is damaged`);
    return { body: Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>, bytes: stat.size };
  }

  /** Removes temp files older than a day: left by a process killed mid-upload (a live upload's file is younger). */
  private async sweepOnce(tempDir: string): Promise<void> {
    if (this.swept) return;
    this.swept = true;
    const now = Date.now();
    for (const name of await fs.readdir(tempDir).catch(() => [] as string[])) {
      const p = path.join(tempDir, name);
      const stat = await fs.stat(p).catch(() => null);
      if (stat && now - stat.mtimeMs > STALE_TEMP_MS) await fs.rm(p, { force: true });
    }
  }
}

async function writeAll(file: fs.FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** Makes a rename durable: the directory entry is flushed too (best effort where a platform cannot open directories). */
async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r').catch(() => null);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // some file systems refuse fsync on a directory; the rename itself is still atomic
  } finally {
    await handle.close();
  }
}

/**
 * Reads and drops what is left of a refused body, for at most `ms`: a client
 * that sends its whole body before reading the reply (MLflow's Python client
 * does) then reads the refusal instead of a reset connection, which it would
 * retry. Past `ms` the body is cancelled.
 */
export async function drainBody(body: ReadableStream<Uint8Array> | null, ms: number): Promise<void> {
  if (!body || body.locked) return;
  const reader = body.getReader();
  const deadline = Date.now() + ms;
  try {
    while (Date.now() < deadline) {
      const { done } = await reader.read();
      if (done) return;
    }
    await reader.cancel();
  } catch {
    // the client went away: nothing left to drain
  }
}
