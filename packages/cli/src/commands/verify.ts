import type { Command } from '../command.ts';
import { formatCount, formatDuration, ProgressLine } from '../format.ts';

export const verifyCommand: Command = {
  name: 'verify',
  summary: "check every stream's hash chain (exit code 1 when broken)",
  usage: 'verify',
  description:
    "Walks every event in order and checks that each stream's versions count 1, 2, 3…, that each event names the previous event's hash, and that its hash matches its content. Names the first event that fails, and exits with code 1.",
  async run(ctx) {
    const pd = await ctx.openStore();
    const [count] = await pd.database.db.query<{ n: number }>('SELECT count(*)::int8 AS n FROM events');
    const progress = new ProgressLine(ctx.term.progressStream, 'verifying');
    const started = performance.now();
    const result = await pd.verify({ onProgress: (checked) => progress.update(checked, count?.n) });
    progress.finish();
    const ms = performance.now() - started;
    if (ctx.json) {
      ctx.term.json({ ...result, ms: Math.round(ms) });
      return result.ok ? 0 : 1;
    }
    const { paint } = ctx.term;
    if (result.ok) {
      ctx.term.line(`${paint.green('OK')}  ${formatCount(result.checked)} events in ${formatCount(result.streams)} streams: every hash chain is intact (${formatDuration(ms)}).`);
      return 0;
    }
    const broken = result.firstBroken!;
    ctx.term.line(`${paint.red('BROKEN')}  event at position ${broken.position}: ${broken.type} #${broken.streamVersion} of ${broken.streamId} (event id ${broken.eventId})`);
    ctx.term.line(`  ${broken.reason}`);
    ctx.term.line(paint.dim(`  ${formatCount(result.checked)} events before it checked out.`));
    return 1;
  },
};
