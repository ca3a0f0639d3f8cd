import type { Command } from '../command.ts';
import { formatCount, formatDuration, ProgressLine } from '../format.ts';

export const replayCommand: Command = {
  name: 'replay',
  summary: 'rebuild every read model (runs, lineage, metrics) from the events',
  usage: 'replay',
  description:
    'Empties the projection tables and replays every event into them, in one transaction: readers see the old read models until the new ones commit. The events themselves are never touched.',
  async run(ctx) {
    const pd = await ctx.openStore();
    const progress = new ProgressLine(ctx.term.progressStream, 'replaying');
    const result = await pd.replay({ onProgress: (done, total) => progress.update(done, total) });
    progress.finish();
    const eventsPerSecond = result.ms > 0 ? Math.round((result.events / result.ms) * 1000) : 0;
    if (ctx.json) return ctx.term.json({ events: result.events, ms: Math.round(result.ms), eventsPerSecond });
    ctx.term.line(`Rebuilt the projections from ${formatCount(result.events)} events in ${formatDuration(result.ms)} (${formatCount(eventsPerSecond)} events/s).`);
  },
};
