import { describe, expect, it } from 'vitest';
import type { ScanProgress } from '@pedigree/ledger';
import { scanProgress } from './scan-progress.ts';

const MiB = 2 ** 20;

function terminal() {
  const writes: string[] = [];
  return { stream: { columns: 200, write: (t: string) => writes.push(t) } as unknown as NodeJS.WriteStream, writes };
}

const progress = (over: Partial<ScanProgress>): ScanProgress => ({
  events: 0,
  totalEvents: 400,
  points: 0,
  storedBytes: 0,
  totalStoredBytes: 400 * MiB,
  batch: { events: 1, bytes: 4 * MiB, jsonBytes: 4 * MiB },
  elapsedMs: 0,
  ...over,
});

describe('scanProgress', () => {
  it('shows events, points, the rate and an ETA reckoned in bytes, not events', () => {
    const { stream, writes } = terminal();
    const bar = scanProgress(stream, 'replaying');
    // A quarter of the bytes in 10 s, though only a tenth of the events: 30 s to go.
    bar.onBatch(progress({ events: 40, points: 2_000_000, storedBytes: 100 * MiB, elapsedMs: 10_000 }));
    const line = writes.at(-1)!;
    expect(line).toContain('replaying [######..................] 25%');
    expect(line).toContain('40/400 events');
    expect(line).toContain('2,000,000 points');
    expect(line).toContain('200,000 points/s');
    expect(line).toContain('ETA 30.0 s');
    bar.finish();
    expect(writes.at(-1)).toBe('\r\x1b[K');
  });

  it('says events/s where there are no points, and no rate or ETA in the first second', () => {
    const { stream, writes } = terminal();
    const bar = scanProgress(stream, 'verifying');
    bar.onBatch(progress({ events: 10, storedBytes: MiB, elapsedMs: 200 }));
    expect(writes.at(-1)).not.toMatch(/\/s|ETA/);
    const later = terminal();
    scanProgress(later.stream, 'verifying').onBatch(progress({ events: 200, storedBytes: 200 * MiB, elapsedMs: 2000 }));
    expect(later.writes.at(-1)).toContain('100 events/s');
  });

  it('is silent without a terminal (a pipe, or --json)', () => {
    const bar = scanProgress(null, 'replaying');
    expect(() => {
      bar.onBatch(progress({ events: 400, storedBytes: 400 * MiB, elapsedMs: 5000 }));
      bar.finish();
    }).not.toThrow();
  });
});
