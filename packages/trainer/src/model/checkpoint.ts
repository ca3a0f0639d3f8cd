import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { NamedTensor } from './model.ts';

/**
 * Checkpoints as files in the safetensors layout: an 8-byte little-endian
 * header length, a JSON header `{ name: { dtype: "F32", shape, data_offsets:
 * [begin, end] }, "__metadata__": { string: string } }` padded with spaces to
 * 8 bytes, then the tensors' raw little-endian float32 bytes. Content-addressed:
 * the file is named by the SHA-256 of its bytes, and a load that finds other
 * bytes under that name refuses them.
 */

export interface SavedCheckpoint {
  /** `sha256:<64 hex>` of the file. */
  digest: string;
  path: string;
  bytes: number;
  /** Tensor name → shape. */
  manifest: Record<string, number[]>;
}

export interface LoadedCheckpoint extends SavedCheckpoint {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const EXTENSION = '.safetensors';
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The file's bytes: header, then each tensor's data in order. */
export function encodeCheckpoint(tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name in header) throw new CheckpointError(`tensor name ${JSON.stringify(t.name)} is reserved or used twice`);
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) throw new CheckpointError(`tensor ${t.name}: shape [${t.shape}] holds ${size} values, its data ${t.data.length}`);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * size] };
    offset += 4 * size;
  }
  header.__metadata__ = metadata;
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8; // keeps the data 8-byte aligned, as safetensors does
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, ' ')]);
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of tensors) {
    if (LITTLE_ENDIAN) out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    else for (let i = 0; i < t.data.length; i++) view.setFloat32(at + 4 * i, t.data[i]!, true);
    at += t.data.byteLength;
  }
  return out;
}

/** Parses a checkpoint's bytes; every offset and shape is checked, so a damaged file fails here with a reason. */
export function decodeCheckpoint(bytes: Uint8Array, what = 'checkpoint'): { tensors: Map<string, NamedTensor>; metadata: Record<string, string> } {
  const bad = (why: string) => new CheckpointError(`${what} is not a valid checkpoint: ${why}`);
  if (bytes.length < 8) throw bad(`${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerBytes = view.getBigUint64(0, true);
  if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) throw bad(`the header claims ${headerBytes} bytes, the file has ${bytes.length - 8} after the length`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, Number(headerBytes)).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw bad(`the header is not JSON (${(err as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('the header is not a JSON object');
  const dataStart = 8 + Number(headerBytes);
  const dataLength = bytes.length - dataStart;
  const tensors = new Map<string, NamedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!entry || typeof entry !== 'object' || Object.values(entry).some((v) => typeof v !== 'string')) throw bad('__metadata__ must map strings to strings');
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (e?.dtype !== 'F32') throw bad(`tensor ${name} has dtype ${JSON.stringify(e?.dtype)}; only F32 is read`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad(`tensor ${name} has no valid shape`);
    const [begin, end] = Array.isArray(e.data_offsets) ? (e.data_offsets as unknown[]) : [];
    const size = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (!Number.isInteger(begin) || !Number.isInteger(end) || (begin as number) < 0 || (end as number) > dataLength || (end as number) - (begin as number) !== 4 * size) {
      throw bad(`tensor ${name}: data_offsets ${JSON.stringify(e.data_offsets)} do not fit shape [${e.shape}] in ${dataLength} data bytes`);
    }
    const data = new Float32Array(size);
    const from = dataStart + (begin as number);
    if (LITTLE_ENDIAN) new Uint8Array(data.buffer).set(bytes.subarray(from, from + 4 * size));
    else for (let i = 0; i < size; i++) data[i] = view.getFloat32(from + 4 * i, true);
    tensors.set(name, { name, shape: e.shape as number[], data });
  }
  return { tensors, metadata };
}

/**
 * Writes the tensors to `<dir>/<sha256 hex>.safetensors`, atomically (a
 * temporary file in the same directory, flushed, then renamed), and returns
 * what `run.checkpoint(...)` takes. The same bytes saved twice are one file.
 */
export async function saveCheckpoint(dir: string, tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Promise<SavedCheckpoint> {
  const bytes = encodeCheckpoint(tensors, metadata);
  const manifest = Object.fromEntries(tensors.map((t) => [t.name, [...t.shape]]));
  const { digest, path: file } = await writeContentAddressed(dir, bytes, EXTENSION);
  return { digest, path: file, bytes: bytes.length, manifest };
}

/**
 * Writes bytes to `<dir>/<sha256 hex><extension>` atomically (a temporary file
 * in the same directory, flushed, then renamed). The same bytes written twice
 * are one file; a damaged file of that name is replaced.
 */
export async function writeContentAddressed(dir: string, bytes: Uint8Array, extension: string): Promise<{ digest: string; path: string }> {
  const digest = sha256(bytes);
  mkdirSync(dir, { recursive: true });
  const file = path.resolve(dir, `${digest.slice('sha256:'.length)}${extension}`);
  const existing = await readFile(file).catch(() => null);
  if (!existing || sha256(existing) !== digest) {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      const handle = await open(tmp, 'wx');
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
  return { digest, path: file };
}

/** The digest a checkpoint's file name promises (`<hex>.safetensors`), if it is named that way. */
export function digestFromPath(file: string): string | undefined {
  const m = /^([0-9a-f]{64})\.safetensors$/.exec(path.basename(file));
  return m ? `sha256:${m[1]}` : undefined;
}

/**
 * Reads a checkpoint and checks it is the one expected: its SHA-256 must be
 * `digest` (default: the one its file name gives). A corrupted or swapped
 * file is refused with both digests in the message.
 */
export async function loadCheckpoint(file: string, opts: { digest?: string } = {}): Promise<LoadedCheckpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CheckpointError(code === 'ENOENT' ? `checkpoint file ${file} does not exist` : `cannot read checkpoint ${file}: ${(err as Error).message}`);
  }
  const digest = sha256(bytes);
  const expected = opts.digest ?? digestFromPath(file);
  if (expected && expected !== digest) {
    throw new CheckpointError(`checkpoint ${file} is corrupted: its bytes hash to ${digest}, but it was saved as ${expected}; refusing to load it`);
  }
  const { tensors, metadata } = decodeCheckpoint(bytes, `checkpoint ${file}`);
  const manifest = Object.fromEntries([...tensors.values()].map((t) => [t.name, [...t.shape]]));
  return { digest, path: path.resolve(file), bytes: bytes.length, manifest, tensors, metadata };
}

/** Copies loaded tensors into a model's (views of) tensors by name; shapes must match. */
export function copyInto(targets: readonly NamedTensor[], loaded: Map<string, NamedTensor>, what: string): void {
  for (const t of targets) {
    const src = loaded.get(t.name);
    if (!src) throw new CheckpointError(`${what} has no tensor ${t.name}`);
    if (src.shape.join() !== t.shape.join()) throw new CheckpointError(`${what}: tensor ${t.name} is [${src.shape}], the model's is [${t.shape}]`);
    t.data.set(src.data);
  }
}
