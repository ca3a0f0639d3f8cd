import type { ScanProgress } from '@pedigree/ledger';
import { formatCount, formatDuration, ProgressLine } from './format.ts';

/** Rates and an ETA wait for this much of a pass: the first batch's time says little. */
const SETTLE_MS = 1000;

/**
 * The progress of a pass over the log (`replay`, `verify`) on one redrawn
 * line: events, points, rate and ETA. The bar and the ETA go by bytes as
 * stored, not by events: one metric batch can weigh as much as 10^5 small
 * events. Silent where `stream` is null (not a terminal, or --json).
 */
export function scanProgress(stream: NodeJS.WriteStream | null, label: string): { onBatch(p: ScanProgress): void; finish(): void } {
  const line = new ProgressLine(stream, label);
  return {
    onBatch(p) {
      const fraction = p.totalStoredBytes > 0 ? p.storedBytes / p.totalStoredBytes : undefined;
      const parts = [`${formatCount(p.events)}/${formatCount(p.totalEvents)} events`];
      if (p.points > 0) parts.push(`${formatCount(p.points)} points`);
      if (p.elapsedMs >= SETTLE_MS) {
        const perSecond = (n: number) => formatCount(Math.round((n * 1000) / p.elapsedMs));
        parts.push(p.points > 0 ? `${perSecond(p.points)} points/s` : `${perSecond(p.events)} events/s`);
        if (fraction !== undefined && fraction > 0 && fraction < 1) parts.push(`ETA ${formatDuration((p.elapsedMs * (1 - fraction)) / fraction)}`);
      }
      line.show(fraction, parts.join('  '));
    },
    finish: () => line.finish(),
  };
}
