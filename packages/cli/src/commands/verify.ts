import type { Command } from '../command.ts';
import { withCheckpointVerification } from './checkpoint.ts';
import { formatCount, formatDuration } from '../format.ts';
import { scanProgress } from '../scan-progress.ts';

// --checkpoint FILE: the Merkle tree check after the chain walk (checkpoint.ts).
export const verifyCommand: Command = withCheckpointVerification({
  name: 'verify',
  summary: "check every stream's hash chain (exit code 1 when broken)",
  usage: 'verify',
  description:
    "Walks every event in order and checks that each stream's versions count 1, 2, 3…, that each event names the previous event's hash, and that its hash matches its content. Names the first event that fails, and exits with code 1.",
  async run(ctx) {
    const pd = await ctx.openStore();
    const progress = scanProgress(ctx.json ? null : ctx.term.progressStream, 'verifying');
    const started = performance.now();
    const result = await pd.verify({ onBatch: progress.onBatch });
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
});
