import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { defaultHome, stripQuery, type Db, type StoreTarget } from '@pedigree/db';
import {
  CheckpointError,
  checkLogAgainst,
  LogRewrittenError,
  LogTreeFollower,
  openCheckpoint,
  signCheckpoint,
  type Checkpoint,
  type OpenedCheckpoint,
  type TreeHead,
} from '@pedigree/ledger';
import { UsageError } from './args.ts';

/**
 * Where a store's checkpoint key and signed checkpoints live, and the files
 * themselves (the formats are the ledger's: packages/ledger/src/checkpoint.ts).
 *
 * - Embedded store: `<store dir>/checkpoint-key.pem` (created, mode 0600, on
 *   first use) and `<store dir>/ledger-checkpoints/`.
 * - PostgreSQL store: it has no directory of its own, so
 *   `$PEDIGREE_HOME/postgres/<host>_<port>_<database>/` (./.pedigree when
 *   PEDIGREE_HOME is unset) holds both.
 * - `--key FILE` (`--checkpoint-key` for start) or PEDIGREE_CHECKPOINT_KEY
 *   names another key file.
 *
 * (`<store dir>/checkpoints/` is the trainer's model checkpoints: a different thing.)
 */
export const KEY_FILE = 'checkpoint-key.pem';
export const CHECKPOINTS_DIR = 'ledger-checkpoints';
/** Written by a serving `pedigree start` that takes checkpoints on SIGUSR2. */
const ON_DEMAND_FILE = 'serving-on-demand.json';

export interface CheckpointPlace {
  /** The log's identity in its checkpoints (C2SP origin, and the signing key's name). */
  origin: string;
  keyFile: string;
  /** Whether the operator named the key file (else it is the store's default one). */
  keyNamed: boolean;
  dir: string;
  kind: 'pglite' | 'postgres';
}

/** The key file the operator named: the command's option, else `fromEnv` (PEDIGREE_CHECKPOINT_KEY, see env.ts). */
export function namedKeyFile(option: string | undefined, fromEnv: string | undefined): string | undefined {
  const named = option ?? fromEnv;
  if (named !== undefined && !named) throw new UsageError('--key needs a file');
  return named === undefined ? undefined : path.resolve(named);
}

const encodeSegments = (p: string) => p.split('/').map(encodeURIComponent).join('/');

export function checkpointPlace(target: StoreTarget, keyFile: string | undefined): CheckpointPlace {
  if ('dir' in target) {
    const dir = path.resolve(target.dir);
    return { kind: 'pglite', origin: `pedigree.local/pglite${encodeSegments(dir)}`, keyFile: keyFile ?? path.join(dir, KEY_FILE), keyNamed: keyFile !== undefined, dir: path.join(dir, CHECKPOINTS_DIR) };
  }
  const url = new URL(stripQuery(target.url));
  const store = `${url.hostname || 'localhost'}:${url.port || '5432'}${url.pathname || '/'}`;
  const home = path.join(defaultHome(), 'postgres', store.replace(/[^A-Za-z0-9._-]+/g, '_'));
  return { kind: 'postgres', origin: `pedigree.local/postgres/${encodeSegments(store)}`, keyFile: keyFile ?? path.join(home, KEY_FILE), keyNamed: keyFile !== undefined, dir: path.join(home, CHECKPOINTS_DIR) };
}

/**
 * The Ed25519 signing key in `file`, created there (mode 0600, in a 0700
 * directory if it has to make one) when `create` and it does not exist yet.
 * A key others may read is refused: whoever holds it can sign checkpoints.
 */
export function loadSigningKey(file: string, opts: { create: boolean }): { key: KeyObject; created: boolean } {
  let created = false;
  if (!existsSync(file)) {
    if (!opts.create) throw new Error(`no checkpoint key at ${file}`);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    try {
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process made it first: use theirs
    }
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) throw new Error(`the checkpoint key ${file} may be read by others (mode ${mode.toString(8)}): whoever reads it can sign checkpoints; chmod 600 it`);
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file, 'utf8'));
  } catch {
    throw new Error(`${file} is not a private key in PEM (a checkpoint key is Ed25519: openssl genpkey -algorithm ed25519)`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${file} holds an ${key.asymmetricKeyType} key; checkpoint keys are Ed25519`);
  return { key, created };
}

/** The public key to check checkpoints against: from a public key PEM, or from the private key. */
export function loadTrustedKey(place: CheckpointPlace): KeyObject {
  if (!existsSync(place.keyFile)) {
    throw new Error(`no key to check the checkpoint against: ${place.keyFile} does not exist; give --key FILE (the signer's public key in PEM, or its private key)`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(readFileSync(place.keyFile, 'utf8'));
  } catch {
    throw new Error(`${place.keyFile} is not a key in PEM`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${place.keyFile} holds an ${key.asymmetricKeyType} key; checkpoint keys are Ed25519`);
  return key;
}

/** `<size, 15 digits>-<UTC time>.checkpoint`: names sort by size, then time. */
export function checkpointFileName(c: Pick<Checkpoint, 'treeSize' | 'timestamp'>): string {
  return `${String(c.treeSize).padStart(15, '0')}-${c.timestamp.toISOString().replace(/[-:.]/g, '')}.checkpoint`;
}
const CHECKPOINT_FILE = /^\d{15}-\d{8}T\d{9}Z\.checkpoint$/;

/** Writes a signed checkpoint into `dir` (made if missing), atomically; returns its path. */
export function writeCheckpointFile(dir: string, note: string, c: Pick<Checkpoint, 'treeSize' | 'timestamp'>): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, checkpointFileName(c));
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, note);
  renameSync(temporary, file);
  return file;
}

export interface StoredCheckpoint extends OpenedCheckpoint {
  file: string;
}

/**
 * The largest checkpoint in `dir` that the key signed, or null; files that
 * do not open with the key are skipped and listed.
 */
export function newestCheckpoint(dir: string, key: KeyObject): { newest: StoredCheckpoint | null; skipped: string[] } {
  const skipped: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => CHECKPOINT_FILE.test(n));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  for (const name of names.sort().reverse()) {
    const file = path.join(dir, name);
    try {
      return { newest: { file, ...openCheckpoint(readFileSync(file, 'utf8'), key) }, skipped };
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      skipped.push(`${file}: ${err.message}`);
    }
  }
  return { newest: null, skipped };
}

export function signHead(place: CheckpointPlace, key: KeyObject, head: TreeHead, timestamp: Date): { note: string; checkpoint: Omit<Checkpoint, 'key'> } {
  const checkpoint = { origin: place.origin, treeSize: head.treeSize, rootHash: head.rootHash, timestamp, lastPosition: head.lastPosition };
  return { note: signCheckpoint(checkpoint, key), checkpoint };
}

/** A `pedigree start` taking checkpoints on SIGUSR2, if one serves the store of `place` (an embedded store). */
export function onDemandServer(place: CheckpointPlace): { pid: number } | null {
  try {
    const note = JSON.parse(readFileSync(path.join(place.dir, ON_DEMAND_FILE), 'utf8')) as { pid: number };
    process.kill(note.pid, 0);
    return note;
  } catch {
    return null;
  }
}

export interface PeriodicCheckpoints {
  /** Takes one now (even if the log has not grown); resolves with its file, or null when checkpoints are off. */
  takeNow(): Promise<string | null>;
  /** Stops the timer, and takes a last checkpoint if the log grew. */
  stop(): Promise<void>;
}

/**
 * What `pedigree start` runs beside the server: a checkpoint every `everyMs`
 * (when the log grew), one on SIGUSR2, and one on stop. The tree follows the
 * log incrementally (LogTreeFollower), so it never signs a head that does not
 * extend the last one; at startup it first checks the log against the newest
 * checkpoint in the directory, and signs nothing if the log no longer
 * extends it (tampering, or another store's directory): that is reported on
 * stderr and left for `pedigree verify --checkpoint` to look into.
 */
export function startPeriodicCheckpoints(opts: {
  db: Db;
  place: CheckpointPlace;
  key: KeyObject;
  /** null: only on demand and on stop. */
  everyMs: number | null;
  warn(line: string): void;
  /** A line for an on-demand checkpoint (not for the periodic ones). */
  note(line: string): void;
  now?: () => Date;
}): PeriodicCheckpoints {
  const { db, place, key } = opts;
  const now = opts.now ?? (() => new Date());
  const follower = new LogTreeFollower();
  let lastSignedSize: number | null = null;
  let off = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const onDemandFile = path.join(place.dir, ON_DEMAND_FILE);
  const turnOff = (why: string) => {
    off = true;
    rmSync(onDemandFile, { force: true });
    opts.warn(`pedigree: checkpoints stopped: ${why}`);
  };
  /** One at a time: the follower reads the log in order. */
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work);
    queue = run.catch(() => {});
    return run;
  };
  /** Never rejects: a checkpoint that fails is reported, and the server goes on. */
  const take = (force: boolean) =>
    serially(async (): Promise<string | null> => {
      if (off) return null;
      try {
        const head: TreeHead = await follower.advance(db);
        if (!force && (head.treeSize === lastSignedSize || head.treeSize === 0)) return null;
        const { note, checkpoint } = signHead(place, key, head, now());
        const file = writeCheckpointFile(place.dir, note, checkpoint);
        lastSignedSize = head.treeSize;
        return file;
      } catch (err) {
        if (err instanceof LogRewrittenError) turnOff(`${err.message}; run \`pedigree verify --checkpoint\` with the newest file in ${place.dir}`);
        else opts.warn(`pedigree: could not take a checkpoint: ${(err as Error).message}`);
        return null;
      }
    });

  mkdirSync(place.dir, { recursive: true });
  writeFileSync(onDemandFile, `${JSON.stringify({ pid: process.pid })}\n`);
  const started = serially(async () => {
    const { newest, skipped } = newestCheckpoint(place.dir, key);
    for (const s of skipped) opts.warn(`pedigree: skipping a checkpoint that does not open with ${place.keyFile}: ${s}`);
    if (newest) {
      const check = await checkLogAgainst(db, newest.checkpoint);
      if (!check.ok) {
        turnOff(`the log does not extend the newest checkpoint, ${newest.file}: ${check.problem!.message}`);
        return;
      }
      lastSignedSize = newest.checkpoint.treeSize;
    }
  }).catch((err) => turnOff(`the log could not be checked against the newest checkpoint: ${(err as Error).message}`));
  void started.then(() => take(false));

  const schedule = () => {
    if (opts.everyMs === null || stopped) return;
    timer = setTimeout(() => {
      void take(false).finally(schedule);
    }, opts.everyMs);
    timer.unref();
  };
  schedule();

  const onSignal = () => {
    void take(true).then((file) => {
      if (file) opts.note(`Checkpoint signed: ${file}`);
    });
  };
  process.on('SIGUSR2', onSignal);

  return {
    takeNow: () => take(true),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      process.off('SIGUSR2', onSignal);
      rmSync(onDemandFile, { force: true });
      await started;
      await take(false);
    },
  };
}

/** `10m`, `30s`, `1h`, or a bare number of minutes; 0 or `off`: no periodic checkpoints. */
export function parseInterval(raw: string, name: string): number | null {
  if (raw === 'off' || raw === '0') return null;
  const match = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(raw);
  const ms = match ? Number(match[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 'm') as 's' | 'm' | 'h'] : NaN;
  if (!(ms >= 1000 && ms <= 2 ** 31 - 1)) throw new UsageError(`${name} must be a duration from 1s to 24d (e.g. 10m, 30s, 1h) or off; got ${JSON.stringify(raw)}`);
  return ms;
}
