import { createPublicKey } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CheckpointError, checkLogAgainst, logTreeHead, openCheckpoint, verifierKeyString, type CheckpointCheck, type OpenedCheckpoint } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { UsageError, type OptionSpec } from '../args.ts';
import {
  checkpointPlace,
  loadSigningKey,
  loadTrustedKey,
  namedKeyFile,
  newestCheckpoint,
  onDemandServer,
  parseInterval,
  signHead,
  startPeriodicCheckpoints,
  writeCheckpointFile,
  type CheckpointPlace,
  type PeriodicCheckpoints,
} from '../checkpoints.ts';
import type { Command, Context } from '../command.ts';
import { formatCount, formatTimestamp, ProgressLine } from '../format.ts';
import { servingProcess } from '../server.ts';

/**
 * Signed checkpoints of the event log, from the command line: `pedigree
 * checkpoint` signs one, `pedigree verify --checkpoint FILE` proves the log
 * extends one, and `pedigree start` signs them periodically
 * (docs/ledger-verification.md says what they prove and how anyone can check
 * them without Pedigree).
 */

const ON_DEMAND_WAIT_MS = 60_000;

export const checkpointCommand: Command = {
  name: 'checkpoint',
  summary: 'sign a checkpoint of the event log (a Merkle tree head) with a key kept outside the database',
  usage: 'checkpoint [--out FILE] [--key FILE] [--public-key]',
  description:
    "Computes the RFC 9162 Merkle tree head of every event so far and signs it (Ed25519, a C2SP signed-note checkpoint), writes it into the store's ledger-checkpoints/ directory (and to --out FILE), and prints it. Keep copies somewhere the database's administrators cannot write: `pedigree verify --checkpoint FILE` later proves the log still extends it, so a deleted tail, a forged insert or a re-hashed stream before it cannot go unseen. The key is <store>/checkpoint-key.pem for the embedded store ($PEDIGREE_HOME/postgres/<host>_<port>_<db>/ for a server), created on first use, or the file --key or $PEDIGREE_CHECKPOINT_KEY names. It refuses to sign a log that no longer extends the newest checkpoint there. While `pedigree start` serves the embedded store, it asks the server for one. --public-key prints the public key (PEM) to give to whoever will verify.",
  options: [
    { name: 'out', type: 'string', value: 'FILE', description: 'also write the checkpoint to FILE' },
    { name: 'key', type: 'string', value: 'FILE', description: 'the Ed25519 signing key (PEM; default: the store’s checkpoint-key.pem; $PEDIGREE_CHECKPOINT_KEY)' },
    { name: 'public-key', type: 'boolean', description: 'print the public key (PEM) and its verifier key instead; signs nothing' },
  ],
  async run(ctx) {
    const place = checkpointPlace(ctx.target, namedKeyFile(ctx.options.string('key'), ctx.env.checkpointKey));
    const out = ctx.options.string('out');
    if (out !== undefined && !out) throw new UsageError('--out needs a file');
    const { term } = ctx;

    if (ctx.options.flag('public-key')) {
      const publicKey = createPublicKey(loadSigningKey(place.keyFile, { create: true }).key);
      const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const vkey = verifierKeyString(place.origin, publicKey);
      if (ctx.json) return term.json({ keyFile: place.keyFile, publicKey: pem, verifierKey: vkey, origin: place.origin });
      term.line(pem.trimEnd());
      term.error(term.paint.dim(`verifier key (signed-note): ${vkey}`));
      return;
    }

    if ('dir' in ctx.target && servingProcess(ctx.target.dir)) return askServer(ctx, place, out);

    const pd = await ctx.openStore();
    const { key, created } = loadSigningKey(place.keyFile, { create: true });
    const { db } = pd.database;
    const progress = new ProgressLine(term.progressStream, 'hashing');
    const { newest, skipped } = newestCheckpoint(place.dir, key);
    for (const s of skipped) term.error(`pedigree: skipping a checkpoint that does not open with ${place.keyFile}: ${s}`);
    let head;
    if (newest) {
      // Never sign a log that does not extend what was signed before: that would launder the change.
      const check = await checkLogAgainst(db, newest.checkpoint, { onProgress: (done, total) => progress.update(done, total) });
      progress.finish();
      if (!check.ok) {
        throw new Error(
          `refusing to sign: the log does not extend the newest checkpoint, ${newest.file}: ${check.problem!.message}. See \`pedigree verify --checkpoint ${newest.file}\``,
        );
      }
      head = { treeSize: check.current.treeSize, rootHash: Buffer.from(check.current.rootHash, 'base64'), lastPosition: check.current.lastPosition };
    } else {
      head = await logTreeHead(db);
    }
    const { note, checkpoint } = signHead(place, key, head, new Date());
    const file = writeCheckpointFile(place.dir, note, checkpoint);
    if (out) writeFileSync(out, note);
    if (ctx.json) {
      return term.json({
        file,
        ...(out ? { out: path.resolve(out) } : {}),
        origin: checkpoint.origin,
        treeSize: checkpoint.treeSize,
        rootHash: checkpoint.rootHash.toString('base64'),
        timestamp: checkpoint.timestamp.toISOString(),
        lastPosition: checkpoint.lastPosition,
        keyFile: place.keyFile,
        keyCreated: created,
        note,
      });
    }
    term.line(note.trimEnd());
    term.error(term.paint.dim(`${formatCount(checkpoint.treeSize)} events; written to ${file}${out ? ` and ${out}` : ''}${created ? ` (new key ${place.keyFile})` : ''}`));
  },
};

/** The embedded store is served: ask that server (SIGUSR2) for a checkpoint, and wait for its file. */
async function askServer(ctx: Context, place: CheckpointPlace, out: string | undefined): Promise<number | void> {
  const server = onDemandServer(place);
  if (!server) throw new Error('the store is in use by `pedigree start`, which is not taking checkpoints (off, or stopped: see its output); stop it first');
  if (ctx.options.string('key') !== undefined) {
    throw new UsageError('the store is served: the server signs with its own key (--key does not apply); stop it first to sign with another');
  }
  const before = new Set(listCheckpoints(place.dir));
  process.kill(server.pid, 'SIGUSR2');
  const deadline = Date.now() + ON_DEMAND_WAIT_MS;
  for (;;) {
    const fresh = listCheckpoints(place.dir).filter((n) => !before.has(n));
    if (fresh.length) {
      const file = path.join(place.dir, fresh.sort().at(-1)!);
      const note = readFileSync(file, 'utf8');
      if (out) writeFileSync(out, note);
      if (ctx.json) return ctx.term.json({ file, ...(out ? { out: path.resolve(out) } : {}), note, byServer: server.pid });
      ctx.term.line(note.trimEnd());
      ctx.term.error(ctx.term.paint.dim(`signed by the serving pedigree start (pid ${server.pid}); written to ${file}${out ? ` and ${out}` : ''}`));
      return;
    }
    if (Date.now() > deadline) throw new Error(`the serving pedigree start (pid ${server.pid}) wrote no checkpoint within ${ON_DEMAND_WAIT_MS / 1000} s; see its output`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const listCheckpoints = (dir: string) => {
  try {
    return readdirSync(dir).filter((n) => n.endsWith('.checkpoint'));
  } catch {
    return [];
  }
};

// ── verify --checkpoint ─────────────────────────────────────────────────────

const VERIFY_OPTIONS: OptionSpec[] = [
  { name: 'checkpoint', type: 'string', value: 'FILE', description: 'also prove that the log extends this signed checkpoint (truncation, forged inserts, re-hashed history)' },
  { name: 'key', type: 'string', value: 'FILE', description: 'the key the checkpoint must be signed by: a public key PEM, or the private key (default: the store’s; $PEDIGREE_CHECKPOINT_KEY)' },
];

/**
 * `verify`, with `--checkpoint FILE`: after the chain walk (the command as it
 * is), checks the checkpoint's signature against the trusted key and that the
 * log extends it; the exit code is 1 when either fails. With --json, the
 * chain's result gains a `checkpoint` field.
 */
export function withCheckpointVerification(command: Command): Command {
  return {
    ...command,
    usage: `${command.usage} [--checkpoint FILE [--key FILE]]`,
    description: `${command.description ?? ''} With --checkpoint FILE, it then checks that FILE is signed by the store's checkpoint key (or --key) and that the log extends it: the first events, as many as it counts, must hash to its Merkle root, and a consistency proof (RFC 9162) must lead from it to the log as it is now. A deleted tail, a forged insert or a re-hashed stream before the checkpoint fails it (exit code 1, naming what differs); a log that only grew passes. Tampering before the first checkpoint was taken cannot be seen.`,
    options: [...(command.options ?? []), ...VERIFY_OPTIONS],
    async run(ctx) {
      const file = ctx.options.string('checkpoint');
      if (file === undefined) {
        if (ctx.options.string('key') !== undefined) throw new UsageError('--key goes with --checkpoint FILE');
        return command.run(ctx);
      }
      if (!file) throw new UsageError('--checkpoint needs a file');
      // Before the store is opened: the file and the key.
      const place = checkpointPlace(ctx.target, namedKeyFile(ctx.options.string('key'), ctx.env.checkpointKey));
      let note: string;
      try {
        note = readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`cannot read the checkpoint ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const trusted = loadTrustedKey(place);
      let opened: OpenedCheckpoint | null = null;
      let refused: string | null = null;
      try {
        opened = openCheckpoint(note, trusted);
      } catch (err) {
        if (!(err instanceof CheckpointError)) throw err;
        refused = err.message;
      }

      let pd: Pedigree | undefined;
      let chainJson: unknown;
      const inner: Context = {
        ...ctx,
        term: ctx.json ? { ...ctx.term, json: (value) => void (chainJson = value) } : ctx.term,
        openStore: async (o) => (pd = await ctx.openStore(o)),
      };
      const chainCode = (await command.run(inner)) ?? 0;
      pd ??= await ctx.openStore();

      let check: CheckpointCheck | null = null;
      if (opened) {
        const progress = new ProgressLine(ctx.term.progressStream, 'checking the checkpoint');
        check = await checkLogAgainst(pd.database.db, opened.checkpoint, { onProgress: (done, total) => progress.update(done, total) });
        progress.finish();
      }
      const ok = chainCode === 0 && check?.ok === true;
      if (ctx.json) {
        const c = opened?.checkpoint;
        ctx.term.json({
          ...(chainJson as object),
          checkpoint: {
            ok: check?.ok ?? false,
            file: path.resolve(file),
            ...(refused ? { refused } : {}),
            ...(c ? { origin: c.origin, signer: opened!.signer, timestamp: c.timestamp.toISOString(), storeOrigin: place.origin } : {}),
            ...(check ?? {}),
          },
        });
        return ok ? 0 : 1;
      }
      printCheckpointResult(ctx, { file, place, opened, refused, check });
      return ok ? 0 : 1;
    },
  };
}

function printCheckpointResult(
  ctx: Context,
  r: { file: string; place: CheckpointPlace; opened: OpenedCheckpoint | null; refused: string | null; check: CheckpointCheck | null },
): void {
  const { term } = ctx;
  const { paint } = term;
  if (!r.opened || !r.check) {
    term.line(`${paint.red('REFUSED')}  checkpoint ${r.file}: ${r.refused}`);
    return;
  }
  const c = r.opened.checkpoint;
  const what = `${formatCount(c.treeSize)} events, signed ${formatTimestamp(c.timestamp)} by ${r.opened.signer.name} (key ID ${r.opened.signer.keyId})`;
  if (r.check.ok) {
    const grown = r.check.current.treeSize - c.treeSize;
    term.line(
      `${paint.green('OK')}  the log extends checkpoint ${r.file} (${what}): ${grown === 0 ? 'nothing appended since' : `${formatCount(grown)} events appended since`}; consistency proof of ${r.check.consistencyProof!.length} hashes checked.`,
    );
  } else {
    term.line(`${paint.red('TAMPERED')}  the log does not extend checkpoint ${r.file} (${what}):`);
    term.line(`  ${r.check.problem!.message}.`);
    if (r.check.rootAtCheckpoint) term.line(paint.dim(`  root of the first ${formatCount(c.treeSize)} events now ${r.check.rootAtCheckpoint}; the checkpoint says ${r.check.checkpoint.rootHash}`));
  }
  if (c.origin !== r.place.origin) term.line(paint.dim(`  note: the checkpoint is for ${c.origin}; this store is ${r.place.origin} (moved, or another store's checkpoint?)`));
}

// ── start: periodic checkpoints ─────────────────────────────────────────────

export const CHECKPOINT_START_OPTIONS: OptionSpec[] = [
  {
    name: 'checkpoint-every',
    type: 'string',
    value: 'T',
    description: 'sign a checkpoint of the event log this often when it grew (10m default, 30s, 1h; off), on SIGUSR2, and on stop ($PEDIGREE_CHECKPOINT_EVERY)',
  },
  { name: 'checkpoint-key', type: 'string', value: 'FILE', description: 'the checkpoint signing key (default: the store’s checkpoint-key.pem; $PEDIGREE_CHECKPOINT_KEY)' },
];
const DEFAULT_EVERY = '10m';

/** The settings `start` checks before it opens anything. */
export function checkpointStartSettings(ctx: Context): { everyMs: number | null; place: CheckpointPlace } {
  const raw = ctx.options.string('checkpoint-every') ?? ctx.env.checkpointEvery ?? DEFAULT_EVERY;
  const everyMs = parseInterval(raw, ctx.options.string('checkpoint-every') === undefined && ctx.env.checkpointEvery ? 'PEDIGREE_CHECKPOINT_EVERY' : '--checkpoint-every');
  return { everyMs, place: checkpointPlace(ctx.target, namedKeyFile(ctx.options.string('checkpoint-key'), ctx.env.checkpointKey)) };
}

/**
 * Starts signing checkpoints beside the server (in the background: serving
 * does not wait for the first tree). The embedded store's key is created on
 * first use; a server store signs once its key exists (the first `pedigree
 * checkpoint` creates it) or one is named, so a server started for a moment
 * leaves no key behind in the working directory. Returns null when off.
 */
export function startCheckpointing(ctx: Context, pd: Pedigree, settings: { everyMs: number | null; place: CheckpointPlace }): PeriodicCheckpoints | null {
  const { place, everyMs } = settings;
  const { term } = ctx;
  if (place.kind === 'postgres' && !place.keyNamed && !existsKey(place)) {
    if (!ctx.json) term.line(term.paint.dim(`Checkpoints: off (no key at ${place.keyFile}; \`pedigree checkpoint\` creates it, or name one with --checkpoint-key)`));
    return null;
  }
  const { key } = loadSigningKey(place.keyFile, { create: true });
  const periodic = startPeriodicCheckpoints({
    db: pd.database.db,
    place,
    key,
    everyMs,
    warn: (line) => term.error(line),
    note: (line) => (ctx.json ? term.error(line) : term.line(line)),
  });
  if (!ctx.json) {
    const when = everyMs === null ? 'on request and on stop' : `every ${describeInterval(everyMs)} when the log grew, on request and on stop`;
    term.line(term.paint.dim(`Checkpoints of the event log: ${when}, into ${place.dir} (\`kill -USR2 ${process.pid}\` or \`pedigree checkpoint\` for one now)`));
  }
  return periodic;
}

const existsKey = (place: CheckpointPlace) => {
  try {
    readFileSync(place.keyFile);
    return true;
  } catch {
    return false;
  }
};

function describeInterval(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}
