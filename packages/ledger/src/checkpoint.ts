import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import type { Queryable } from '@pedigree/db';
import { HASH_BYTES, leafHash, MerkleFrontier, verifyConsistency, walkTree } from './merkle.ts';

/**
 * Signed checkpoints of the event log: tamper evidence past the hash chain.
 *
 * The chain (verify.ts) ties each event to the one before it in its stream,
 * so an edit that is not re-hashed shows. It cannot show what someone with
 * the database's owner or superuser rights does with the documented hash:
 * delete the tail, insert a forged event, or change a value and re-hash the
 * rest of its stream. A checkpoint can: it is a Merkle tree head over the
 * whole log (merkle.ts, RFC 9162), signed with an Ed25519 key kept outside the
 * database, and held elsewhere. A later log either extends it (a consistency
 * proof) or someone rewrote history before it.
 *
 * Leaf i is the i-th event by position (the rank, not the position number:
 * positions have gaps), and its leaf bytes are the 32 bytes of the event's
 * hash. That hash is already SHA-256 over the event's canonical form and its
 * predecessor's hash, so the tree covers every byte of every event once the
 * chain check has tied each hash to its event's content; and a tree head is
 * computed from one narrow column, cheaply enough to take one every few
 * minutes on a store of any size.
 *
 * The file format is a C2SP signed note (c2sp.org/signed-note) whose text is
 * a C2SP checkpoint (c2sp.org/tlog-checkpoint), with Pedigree's extension
 * lines; docs/ledger-verification.md specifies every byte.
 */

// ── The log as leaves ───────────────────────────────────────────────────────

/** Rows per query when reading the log's hashes. */
const LEAF_BATCH = 10_000;
const HASH_HEX = /^[0-9a-f]{64}$/;

/** A hash column that cannot be a leaf: the log is malformed at `position`. */
export class MalformedLeafError extends Error {
  override name = 'MalformedLeafError';
  constructor(readonly position: number) {
    super(`the event at position ${position} holds a hash that is not 64 lowercase hex digits`);
  }
}

/** The leaf bytes of an event: its hash, as 32 bytes. */
export function eventLeafBytes(hash: string, position: number): Buffer {
  if (!HASH_HEX.test(hash)) throw new MalformedLeafError(position);
  return Buffer.from(hash, 'hex');
}

/** The log as it stood when a read began: how many events, and the highest position. */
export interface LogExtent {
  size: number;
  lastPosition: number | null;
}

export async function logExtent(db: Queryable): Promise<LogExtent> {
  const [row] = await db.query<{ n: number; p: number | null }>('SELECT count(*)::int8 AS n, max(position) AS p FROM events');
  return { size: row?.n ?? 0, lastPosition: row?.p ?? null };
}

export interface LeafReadOptions {
  /** Read events after this position only (the first read of a log starts before any position, zero and negative ones too). */
  afterPosition?: number | null;
  /** Stop after this position (events appended since the read began are not part of it); null: the log was empty, read nothing. */
  upToPosition?: number | null;
  batch?: number;
  /** Each leaf's position, in order, as it is read. */
  onLeaf?: (position: number) => void;
}

/**
 * The leaf hashes of the log in position order, read in batches of the hash
 * column alone: memory stays bounded whatever the log's size.
 */
export async function* eventLeafHashes(db: Queryable, opts: LeafReadOptions = {}): AsyncGenerator<Buffer> {
  // An upper bound of null is the empty log's last position: nothing to read.
  if (opts.upToPosition === null) return;
  const batch = opts.batch ?? LEAF_BATCH;
  const upTo = opts.upToPosition;
  let after = opts.afterPosition ?? null;
  for (;;) {
    const params: unknown[] = [];
    const where: string[] = [];
    if (after !== null) where.push(`position > $${params.push(after)}`);
    if (upTo !== undefined) where.push(`position <= $${params.push(upTo)}`);
    const rows = await db.query<{ position: number; hash: string }>(
      `SELECT position, hash FROM events${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY position LIMIT $${params.push(batch)}`,
      params,
    );
    for (const row of rows) {
      opts.onLeaf?.(row.position);
      yield leafHash(eventLeafBytes(row.hash, row.position));
    }
    if (rows.length < batch) return;
    after = rows[rows.length - 1]!.position;
  }
}

/** A Merkle tree head of the log. */
export interface TreeHead {
  treeSize: number;
  rootHash: Buffer;
  /** The position of the tree's last event (null for the empty tree). */
  lastPosition: number | null;
}

/** The tree head of the whole log as it stands. */
export async function logTreeHead(db: Queryable, opts: { batch?: number } = {}): Promise<TreeHead> {
  const extent = await logExtent(db);
  let lastPosition: number | null = null;
  const { size, root } = await walkTree(
    eventLeafHashes(db, { upToPosition: extent.lastPosition, batch: opts.batch, onLeaf: (p) => (lastPosition = p) }),
    {},
    extent.size,
  );
  return { treeSize: size, rootHash: root, lastPosition };
}

/** The log under the tree moved: events at or before a position already in the tree were added or removed. */
export class LogRewrittenError extends Error {
  override name = 'LogRewrittenError';
}

/**
 * Follows the log as it grows, keeping only the tree's right frontier: each
 * `advance` reads the events appended since the last one. A head it gives is
 * consistent with every head it gave before by construction, so it never signs
 * a rewritten past — and it checks, cheaply, that the count of events under
 * its frontier has not moved (a delete or an insert behind it). It relies on
 * positions committing in order (appends take one lock: store.ts); were that
 * to change, it must read only below the oldest append still in flight.
 */
export class LogTreeFollower {
  private readonly frontier = new MerkleFrontier();
  private lastPosition: number | null = null;

  head(): TreeHead {
    return { treeSize: this.frontier.size, rootHash: this.frontier.root(), lastPosition: this.lastPosition };
  }

  async advance(db: Queryable): Promise<TreeHead> {
    if (this.lastPosition !== null) {
      const [row] = await db.query<{ n: number }>('SELECT count(*)::int8 AS n FROM events WHERE position <= $1', [this.lastPosition]);
      const now = row?.n ?? 0;
      if (now !== this.frontier.size) {
        throw new LogRewrittenError(
          `the log changed under its signed part: ${now} events at or before position ${this.lastPosition}, where ${this.frontier.size} were read (events ${now > this.frontier.size ? 'inserted' : 'deleted'} behind the store's back)`,
        );
      }
    }
    const extent = await logExtent(db);
    for await (const hash of eventLeafHashes(db, { afterPosition: this.lastPosition, upToPosition: extent.lastPosition, onLeaf: (p) => (this.lastPosition = p) })) {
      this.frontier.pushLeafHash(hash);
    }
    return this.head();
  }
}

// ── Checkpoints: C2SP checkpoint text in a C2SP signed note ─────────────────

export interface Checkpoint {
  /** The log's identity (C2SP: a schema-less URL without spaces or '+'); also the signing key's name. */
  origin: string;
  treeSize: number;
  rootHash: Buffer;
  /** When it was signed. */
  timestamp: Date;
  /** The position of the tree's last event: where "before the checkpoint" ends (null for an empty tree). */
  lastPosition: number | null;
  /** The signer's verifier key (name+id+key), as the Go note package writes it; informational, never trusted by itself. */
  key?: string;
  /** Extension lines this code does not know, kept as they were. */
  otherExtensions?: string[];
}

const ORIGIN = /^[^\s+]+$/u;
const SIGNATURE_TYPE_ED25519 = 0x01;
const MAX_NOTE_BYTES = 64 * 1024;

/** Why a checkpoint file was refused before the log was looked at. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** The checkpoint's note text: origin, size, base64 root, then the extension lines, each ending in a newline. */
export function checkpointText(c: Checkpoint): string {
  if (!ORIGIN.test(c.origin)) throw new CheckpointError(`a checkpoint origin must be non-empty, without spaces or '+': ${JSON.stringify(c.origin)}`);
  if (!Number.isSafeInteger(c.treeSize) || c.treeSize < 0) throw new CheckpointError(`bad tree size ${c.treeSize}`);
  if (c.rootHash.length !== HASH_BYTES) throw new CheckpointError(`a root hash has ${HASH_BYTES} bytes`);
  const lines = [c.origin, String(c.treeSize), c.rootHash.toString('base64'), `timestamp ${c.timestamp.toISOString()}`];
  if (c.lastPosition !== null) lines.push(`last-position ${c.lastPosition}`);
  if (c.key) lines.push(`key ${c.key}`);
  for (const extra of c.otherExtensions ?? []) {
    if (!extra || /[\u0000-\u001f]/.test(extra)) throw new CheckpointError('an extension line must be non-empty, without control characters');
    lines.push(extra);
  }
  return `${lines.join('\n')}\n`;
}

/** Parses a checkpoint's note text (strictly: the three C2SP lines exactly, then extension lines). */
export function parseCheckpointText(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new CheckpointError('checkpoint text must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const [origin, size, root, ...extensions] = lines;
  if (origin === undefined || size === undefined || root === undefined) throw new CheckpointError('a checkpoint has at least three lines: origin, tree size, root hash');
  if (!origin) throw new CheckpointError('the origin line is empty');
  if (!/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) throw new CheckpointError(`bad tree size line ${JSON.stringify(size)}`);
  const rootHash = Buffer.from(root, 'base64');
  if (rootHash.length !== HASH_BYTES || rootHash.toString('base64') !== root) throw new CheckpointError(`bad root hash line ${JSON.stringify(root)} (base64 of ${HASH_BYTES} bytes)`);
  let timestamp: Date | undefined;
  let lastPosition: number | null = null;
  let key: string | undefined;
  const otherExtensions: string[] = [];
  for (const line of extensions) {
    if (!line) throw new CheckpointError('extension lines must be non-empty');
    const [, name, value] = /^([a-z-]+) (.*)$/.exec(line) ?? [];
    if (name === 'timestamp') {
      timestamp = new Date(value!);
      if (Number.isNaN(timestamp.getTime()) || timestamp.toISOString() !== value) throw new CheckpointError(`bad timestamp ${JSON.stringify(value)}`);
    } else if (name === 'last-position') {
      if (!/^-?(0|[1-9][0-9]*)$/.test(value!) || !Number.isSafeInteger(Number(value))) throw new CheckpointError(`bad last-position ${JSON.stringify(value)}`);
      lastPosition = Number(value);
    } else if (name === 'key') key = value;
    else otherExtensions.push(line);
  }
  if (!timestamp) throw new CheckpointError('the checkpoint has no timestamp line');
  if (Number(size) > 0 && lastPosition === null) throw new CheckpointError('a non-empty checkpoint needs a last-position line');
  return { origin, treeSize: Number(size), rootHash, timestamp, lastPosition, ...(key ? { key } : {}), ...(otherExtensions.length ? { otherExtensions } : {}) };
}

/** The 32 bytes of an Ed25519 public key (RFC 8032). */
export function rawEd25519PublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new CheckpointError(`checkpoint keys are Ed25519; this one is ${pub.asymmetricKeyType ?? pub.type}`);
  return Buffer.from(pub.export({ format: 'jwk' }).x!, 'base64url');
}

/** signed-note key ID: SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]. */
export function noteKeyId(name: string, publicKey: KeyObject): Buffer {
  return createHash('sha256')
    .update(Buffer.from(`${name}\n`, 'utf8'))
    .update(Buffer.from([SIGNATURE_TYPE_ED25519]))
    .update(rawEd25519PublicKey(publicKey))
    .digest()
    .subarray(0, 4);
}

/** The verifier key string of the Go note package: name+hex key ID+base64(0x01 || public key). */
export function verifierKeyString(name: string, publicKey: KeyObject): string {
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${Buffer.concat([Buffer.from([SIGNATURE_TYPE_ED25519]), rawEd25519PublicKey(publicKey)]).toString('base64')}`;
}

/** A signed note (c2sp.org/signed-note): `text` (ending in a newline), a blank line, and one Ed25519 signature line by `name`. */
export function signNote(text: string, name: string, privateKey: KeyObject): string {
  if (!text.endsWith('\n')) throw new CheckpointError('a note text ends with a newline');
  if (!ORIGIN.test(name)) throw new CheckpointError(`a key name must be non-empty, without spaces or '+': ${JSON.stringify(name)}`);
  const signature = sign(null, Buffer.from(text, 'utf8'), privateKey);
  return `${text}\n\u2014 ${name} ${Buffer.concat([noteKeyId(name, createPublicKey(privateKey)), signature]).toString('base64')}\n`;
}

/** A checkpoint as a signed note, by the key named after its origin; its text names the verifier key too. */
export function signCheckpoint(c: Omit<Checkpoint, 'key'>, privateKey: KeyObject): string {
  return signNote(checkpointText({ ...c, key: verifierKeyString(c.origin, createPublicKey(privateKey)) }), c.origin, privateKey);
}

export interface SignatureLine {
  name: string;
  keyId: Buffer;
  signature: Buffer;
}

/** Splits a signed note into its text and signature lines (c2sp.org/signed-note: the text ends at the last blank line). */
export function parseSignedNote(note: string): { text: string; signatures: SignatureLine[] } {
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) throw new CheckpointError(`a checkpoint file is at most ${MAX_NOTE_BYTES} bytes`);
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note) || note.includes('\ufffd')) throw new CheckpointError('a signed note is UTF-8 without control characters other than newline');
  if (!note.endsWith('\n')) throw new CheckpointError('a signed note ends with a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new CheckpointError('no signatures: a signed note is its text, a blank line, then signature lines');
  const text = note.slice(0, split + 1);
  const signatures = note
    .slice(split + 2, -1)
    .split('\n')
    .map((line) => {
      const match = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/u.exec(line);
      if (!match) throw new CheckpointError(`not a signature line: ${JSON.stringify(line.slice(0, 80))}`);
      const raw = Buffer.from(match[2]!, 'base64');
      if (raw.length < 5) throw new CheckpointError('a signature is a 4-byte key ID and the signature bytes');
      return { name: match[1]!, keyId: raw.subarray(0, 4), signature: raw.subarray(4) };
    });
  if (signatures.length === 0) throw new CheckpointError('no signature lines');
  return { text, signatures };
}

/**
 * Checks a signed note against the one key trusted to sign it. A key a note
 * names for itself proves nothing: the trusted key comes from the operator.
 * Signature lines by other keys are ignored (signed-note); the note is refused
 * unless a line by the trusted key is there and every such line verifies.
 */
export function openNote(note: string, trustedKey: KeyObject): { text: string; signer: { name: string; keyId: string } } {
  const { text, signatures } = parseSignedNote(note);
  const publicKey = trustedKey.type === 'private' ? createPublicKey(trustedKey) : trustedKey;
  const ours = signatures.filter((s) => s.keyId.equals(noteKeyId(s.name, publicKey)));
  if (ours.length === 0) {
    const by = signatures.map((s) => `${s.name} (key ID ${s.keyId.toString('hex')})`).join(', ');
    throw new CheckpointError(`not signed by the trusted key (Ed25519 ${rawEd25519PublicKey(publicKey).toString('base64')}): signed by ${by}, another key`);
  }
  for (const s of ours) {
    if (s.signature.length !== 64 || !verify(null, Buffer.from(text, 'utf8'), publicKey, s.signature)) {
      throw new CheckpointError(`the signature by ${s.name} does not verify: the checkpoint was altered after it was signed, or the signature is forged`);
    }
  }
  return { text, signer: { name: ours[0]!.name, keyId: ours[0]!.keyId.toString('hex') } };
}

export interface OpenedCheckpoint {
  checkpoint: Checkpoint;
  /** The note's text, exactly the bytes that were signed. */
  text: string;
  /** The name and key ID of the signature that verified. */
  signer: { name: string; keyId: string };
}

/** Parses a checkpoint file and checks its signature against the trusted key (see openNote). */
export function openCheckpoint(note: string, trustedKey: KeyObject): OpenedCheckpoint {
  const { text, signer } = openNote(note, trustedKey);
  return { checkpoint: parseCheckpointText(text), text, signer };
}

// ── Does the log extend a checkpoint? ───────────────────────────────────────

export type CheckpointProblem =
  /** The log has fewer events than the checkpoint vouches for. */
  | 'TRUNCATED'
  /** More events lie at or before the checkpoint's last position than it counted: forged inserts. */
  | 'INSERTED'
  /** Fewer events lie at or before its last position than it counted: deleted from the middle. */
  | 'REMOVED'
  /** As many events, but they no longer hash to its root: altered and re-hashed. */
  | 'REWRITTEN'
  /** The same events, but the last of them is at another position: positions rewritten. */
  | 'MOVED'
  /** An event's hash column is not a hash at all. */
  | 'MALFORMED';

export interface CheckpointCheck {
  ok: boolean;
  checkpoint: { treeSize: number; rootHash: string; lastPosition: number | null };
  /** The log as read: its size, root and last position. */
  current: { treeSize: number; rootHash: string; lastPosition: number | null };
  /** The root of the log's first treeSize events, when it has that many. */
  rootAtCheckpoint?: string;
  /** RFC 9162 consistency proof from the checkpoint's size to the current size (base64 hashes), when the log extends it. */
  consistencyProof?: string[];
  problem?: { code: CheckpointProblem; message: string };
}

/**
 * Recomputes the tree of the log's first `treeSize` events and of the whole
 * log in one pass (the hash column only, in bounded memory), and decides
 * whether the log extends the checkpoint: the root at its size must be its
 * root, and the consistency proof from its size to the current one must
 * verify (RFC 9162 §2.1.4.2), as a third party holding only the two tree
 * heads and the proof would check it. When it does not, says how it differs.
 */
export async function checkLogAgainst(
  db: Queryable,
  checkpoint: Pick<Checkpoint, 'treeSize' | 'rootHash' | 'lastPosition'>,
  opts: { batch?: number; onProgress?: (leaves: number, total: number) => void } = {},
): Promise<CheckpointCheck> {
  const m = checkpoint.treeSize;
  const b64 = (b: Buffer) => b.toString('base64');
  const claimed = { treeSize: m, rootHash: b64(checkpoint.rootHash), lastPosition: checkpoint.lastPosition };
  const extent = await logExtent(db);
  const n = extent.size;
  let read = 0;
  let positionOfLastCheckpointed: number | null = null;
  let lastRead: number | null = null;
  let atOrBeforeLastPosition = 0;
  const onLeaf = (position: number) => {
    read++;
    if (read === m) positionOfLastCheckpointed = position;
    if (checkpoint.lastPosition !== null && position <= checkpoint.lastPosition) atOrBeforeLastPosition++;
    lastRead = position;
    if (read % 10_000 === 0) opts.onProgress?.(read, n);
  };
  let tree: Awaited<ReturnType<typeof walkTree>>;
  try {
    tree = await walkTree(
      eventLeafHashes(db, { upToPosition: extent.lastPosition, batch: opts.batch, onLeaf }),
      m <= n ? { roots: [m], consistency: { from: m, to: n } } : {},
      n,
    );
  } catch (err) {
    if (err instanceof MalformedLeafError) {
      return { ok: false, checkpoint: claimed, current: { treeSize: read, rootHash: '', lastPosition: lastRead }, problem: { code: 'MALFORMED', message: err.message } };
    }
    throw err;
  }
  opts.onProgress?.(read, n);
  if (tree.size !== n) throw new Error(`the log changed while it was read (${tree.size} events read, ${n} counted); run the check again`);
  const current = { treeSize: n, rootHash: b64(tree.root), lastPosition: lastRead };
  const counted = (k: number) => `${k.toLocaleString('en-US')} event${k === 1 ? '' : 's'}`;
  const before = checkpoint.lastPosition === null ? '' : ` at or before position ${checkpoint.lastPosition}`;

  if (n < m) {
    return {
      ok: false,
      checkpoint: claimed,
      current,
      problem: {
        code: 'TRUNCATED',
        message: `the log holds ${counted(n)}, the checkpoint vouches for ${counted(m)}: ${counted(m - n)} removed (the tail truncated, or events deleted)`,
      },
    };
  }
  const rootAtCheckpoint = tree.roots.get(m)!;
  if (!rootAtCheckpoint.equals(checkpoint.rootHash)) {
    const problem = ((): { code: CheckpointProblem; message: string } => {
      const head = `the log's first ${counted(m)} no longer hash to the checkpoint's root`;
      if (checkpoint.lastPosition === null) return { code: 'REWRITTEN', message: `${head}: history before the checkpoint was rewritten` };
      if (atOrBeforeLastPosition > m) {
        return { code: 'INSERTED', message: `${head}: ${counted(atOrBeforeLastPosition)} lie${before} where the checkpoint counted ${m.toLocaleString('en-US')}: ${counted(atOrBeforeLastPosition - m)} inserted (forged)` };
      }
      if (atOrBeforeLastPosition < m) {
        return { code: 'REMOVED', message: `${head}: ${counted(atOrBeforeLastPosition)} lie${before} where the checkpoint counted ${m.toLocaleString('en-US')}: ${counted(m - atOrBeforeLastPosition)} deleted` };
      }
      return { code: 'REWRITTEN', message: `${head}: an event${before} was altered and its hash recomputed (a value changed and the rest of its stream re-hashed)` };
    })();
    return { ok: false, checkpoint: claimed, current, rootAtCheckpoint: b64(rootAtCheckpoint), problem };
  }
  const proof = tree.consistency!;
  if (!verifyConsistency(m, n, checkpoint.rootHash, tree.root, proof)) {
    // The root matched, so an honest proof verifies: this is a bug, not tampering.
    throw new Error(`internal error: the consistency proof from ${m} to ${n} does not verify`);
  }
  if (m > 0 && positionOfLastCheckpointed !== checkpoint.lastPosition) {
    return {
      ok: false,
      checkpoint: claimed,
      current,
      rootAtCheckpoint: b64(rootAtCheckpoint),
      consistencyProof: proof.map(b64),
      problem: { code: 'MOVED', message: `the same ${counted(m)}, but the last of them is now at position ${positionOfLastCheckpointed}, not ${checkpoint.lastPosition}: positions were rewritten` },
    };
  }
  return { ok: true, checkpoint: claimed, current, rootAtCheckpoint: b64(rootAtCheckpoint), consistencyProof: proof.map(b64) };
}
