import { BrokenChainError } from '@pedigree/ledger';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { formatCount, formatDuration } from '../format.ts';
import { scanProgress } from '../scan-progress.ts';

export const replayCommand: Command = {
  name: 'replay',
  summary: 'rebuild every read model (runs, lineage, metrics) from the events',
  usage: 'replay [--force | --skip-checks]',
  description:
    "Checks every stream's hash chain and every metric chunk (as `pedigree verify` does) while appends go on, then, in one transaction, empties the projection tables and rebuilds them from the events in set-based statements. During that transaction new appends and readers of the read models wait until it commits; none sees a half-built model. A broken chain stops it before anything changes, naming the first bad event, and exits with code 1 — unless --force. The events themselves are never touched. Memory stays bounded whatever the store's size: the events are read in batches of at most 16 MiB. With --skip-checks it checks nothing and only rebuilds, taking the events as stored: several times faster on a large log, for a store `pedigree verify` has just checked.",
  options: [
    { name: 'force', type: 'boolean', description: 'rebuild even from a broken hash chain (the broken events are projected as stored, and reported)' },
    { name: 'skip-checks', type: 'boolean', description: 'rebuild without checking the hash chains and metric chunks first (run `pedigree verify` for those)' },
  ],
  async run(ctx) {
    const force = ctx.options.flag('force');
    const check = !ctx.options.flag('skip-checks');
    if (force && !check) throw new UsageError('--force rebuilds from a broken chain it finds; --skip-checks looks for none: give one of them');
    const pd = await ctx.openStore();
    const progress = scanProgress(ctx.json ? null : ctx.term.progressStream, 'replaying');
    let result: Awaited<ReturnType<typeof pd.replay>>;
    try {
      if (!check && !ctx.json) ctx.term.line(ctx.term.paint.dim('Rebuilding without checking the hash chains (--skip-checks)…'));
      result = await pd.replay({ force, check, onBatch: progress.onBatch });
    } catch (err) {
      progress.finish();
      if (!(err instanceof BrokenChainError)) throw err;
      const broken = err.firstBroken;
      if (ctx.json) {
        ctx.term.json({ ok: false, refused: true, firstBroken: broken });
        return 1;
      }
      const { paint } = ctx.term;
      ctx.term.line(`${paint.red('REFUSED')}  the hash chain is broken at position ${broken.position}: ${broken.type} #${broken.streamVersion} of ${broken.streamId} (event id ${broken.eventId})`);
      ctx.term.line(`  ${broken.reason}`);
      ctx.term.line(paint.dim('  The read models were left as they were. `pedigree verify` checks the chains; `pedigree replay --force` rebuilds from the events as stored.'));
      return 1;
    }
    progress.finish();
    const perSecond = (n: number) => (result.ms > 0 ? Math.round((n / result.ms) * 1000) : 0);
    const points = result.points ?? 0;
    const brokenEvents = result.brokenEvents ?? 0;
    if (brokenEvents > 0) {
      const first = result.broken![0]!;
      ctx.term.error(
        `pedigree: warning: ${formatCount(brokenEvents)} event${brokenEvents === 1 ? '' : 's'} failed the hash-chain check (first: position ${first.position}, ${first.type} #${first.streamVersion} of ${first.streamId}: ${first.reason}); --force rebuilt the read models from them as stored`,
      );
    }
    if (ctx.json) {
      return ctx.term.json({
        ok: brokenEvents === 0,
        events: result.events,
        points,
        streams: result.streams,
        checked: result.checked,
        ms: Math.round(result.ms),
        lockedMs: Math.round(result.lockedMs ?? result.ms),
        eventsPerSecond: perSecond(result.events),
        pointsPerSecond: perSecond(points),
        ...(force ? { brokenEvents, broken: result.broken } : {}),
      });
    }
    const chains = !result.checked
      ? 'the hash chains were not checked (--skip-checks; `pedigree verify` checks them)'
      : brokenEvents
        ? ctx.term.paint.yellow(`${formatCount(brokenEvents)} broken (see the warning)`)
        : 'every hash chain intact';
    ctx.term.line(
      `Rebuilt the projections from ${formatCount(result.events)} events (${formatCount(points)} metric points) in ${formatDuration(result.ms)} (${formatCount(perSecond(result.events))} events/s, ${formatCount(perSecond(points))} points/s); ${chains}.`,
    );
  },
};
