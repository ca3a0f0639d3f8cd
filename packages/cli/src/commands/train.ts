import type { Pedigree as Client } from '@pedigree/client';
import type { ProgressSink, TrainResult } from '@pedigree/trainer';
import { UsageError } from '../args.ts';
import type { Command, Context } from '../command.ts';

export const trainCommand: Command = {
  name: 'train',
  summary: 'train one stage with the built-in trainer, recording the run through the client',
  usage: 'train --config FILE [--set KEY=VALUE,…] | --resume RUN | --fork RUN[@CHECKPOINT]',
  description:
    'Runs one stage (pretrain, midtrain, …) of the toy trainer from a JSON config (see packages/trainer/configs/tiny-pretrain.json) and records it like any client would: data sets and mix as artifacts, hyperparameters, metrics, checkpoints (files named by digest, in the config\'s outputDir). --resume goes on after a crash from the run\'s last checkpoint: the crashed run stays failed and a new run, forked from it and tagged "resumed", continues with the optimizer state and data stream restored. --fork starts a new run from a checkpoint (a step, a checkpoint name, or a digest prefix after @; default the last), weights only, with --config or the parent\'s config changed by --set. The store is the embedded one (--home), or a server (--server URL; also used when `pedigree start` is serving the store).',
  options: [
    { name: 'config', type: 'string', value: 'FILE', description: 'the stage config (JSON)' },
    { name: 'set', type: 'string', value: 'KEY=VALUE,…', description: 'change config fields, e.g. optimizer.lr=3e-4,steps=100' },
    { name: 'resume', type: 'string', value: 'RUN', description: 'go on after a crash from the run\'s last checkpoint' },
    { name: 'fork', type: 'string', value: 'RUN[@CKPT]', description: 'a new run from a checkpoint of RUN (step, name or digest prefix; default the last)' },
  ],
  async run(ctx) {
    const configFile = ctx.options.string('config');
    const resume = ctx.options.string('resume');
    const forkSpec = ctx.options.string('fork');
    const { splitAssignments } = await import('@pedigree/trainer');
    const set = splitAssignments(ctx.options.string('set') ?? '');
    if (resume !== undefined && forkSpec !== undefined) throw new UsageError('give --resume or --fork, not both');
    if (resume !== undefined && configFile !== undefined) throw new UsageError("--resume goes on with the crashed run's own config; change fields with --set, or --fork with a new --config");
    if (resume === undefined && forkSpec === undefined && configFile === undefined) throw new UsageError('train needs --config FILE (or --resume RUN, --fork RUN); see `pedigree train --help`');
    const fork = forkSpec === undefined ? undefined : parseFork(forkSpec);

    const trainer = await import('@pedigree/trainer');
    let config;
    try {
      config = configFile === undefined ? undefined : trainer.loadConfig(configFile, set);
    } catch (err) {
      if (err instanceof trainer.ConfigError) return printConfigError(ctx, err);
      throw err;
    }

    const say = (line: string) => (ctx.json ? ctx.term.error(line) : ctx.term.line(line));
    const pd = await recordingClient(ctx, say);
    const result = await trainer
      .train({ pd, config, set: config ? [] : set, resume, fork, progress: progressSink(ctx), log: say })
      .catch((err: unknown) => {
        if (err instanceof trainer.ConfigError) return err;
        throw err;
      });
    if (result instanceof trainer.ConfigError) return printConfigError(ctx, result);
    if (ctx.json) return ctx.term.json(summary(result));
    const id = result.runId.slice(0, 8);
    ctx.term.line(`Next: pedigree show ${id}  ·  pedigree events ${id}  ·  pedigree lineage ${id}`);
  },
};

/** RUN or RUN@CHECKPOINT (run ids never hold an @; checkpoint names may: pretrain@200). */
function parseFork(spec: string): { run: string; checkpoint?: string } {
  const at = spec.indexOf('@');
  const run = at < 0 ? spec : spec.slice(0, at);
  const checkpoint = at < 0 ? undefined : spec.slice(at + 1);
  if (!run || checkpoint === '') throw new UsageError(`--fork takes RUN or RUN@CHECKPOINT (a step, a checkpoint name, or a digest prefix), got ${JSON.stringify(spec)}`);
  return { run, checkpoint };
}

/**
 * The trainer writes through the client (ctx.client): over HTTP with
 * --server, else the embedded store — or, when `pedigree start` is serving
 * that store (PGlite opens in one process at a time), through that server.
 * The dispatcher closes it (flushing what is buffered).
 */
export async function recordingClient(ctx: Context, say: (line: string) => void): Promise<Client> {
  const where = ctx.clientTarget();
  if (where.kind === 'server') {
    say(where.serving ? `The store in ${where.serving.dir} is served by \`pedigree start\` (pid ${where.serving.pid}): recording through ${where.url}` : `Recording through the server at ${where.url}`);
    return ctx.client({ create: true, recording: true });
  }
  if ('url' in where.store) {
    throw new UsageError(
      'train records through the Pedigree client, which opens an embedded store (--home) or talks to a server (--server http://…); to train into PostgreSQL, serve it (`pedigree start --url …`) and pass --server',
    );
  }
  const pd = await ctx.client({ create: true, recording: true });
  say(`Recording into the embedded PGlite store in ${where.store.dir}`);
  return pd;
}

/** A redrawn line on a terminal; elsewhere a plain line every 10% (on stderr with --json, so stdout stays JSON). */
export function progressSink(ctx: Context): ProgressSink {
  const stream = ctx.term.progressStream;
  if (stream) return { write: (text) => void stream.write(text), isTTY: true, columns: stream.columns };
  const say = ctx.json ? ctx.term.error : ctx.term.line;
  return { write: (text) => say(text.replace(/\n$/, '')), isTTY: false };
}

/** A config error lists every bad field, one per line (the dispatcher would keep only the first line). */
function printConfigError(ctx: Context, err: Error): number {
  for (const line of err.message.split('\n')) ctx.term.error(line.startsWith('  ') ? line : `pedigree: ${line}`);
  return 2;
}

function summary(r: TrainResult) {
  return {
    runId: r.runId,
    name: r.name,
    project: r.project,
    kind: r.config.kind,
    startStep: r.startStep,
    steps: r.steps,
    parameters: r.parameters,
    firstLoss: r.firstLoss,
    lastLoss: r.lastLoss,
    evalLoss: r.evalLoss,
    checkpoints: r.checkpoints,
    origin: r.origin,
  };
}
