import { describe, expect, it } from 'vitest';
import { formatSeconds, ProgressBar } from './progress.ts';

function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, sink: { write: (t: string) => void writes.push(t), isTTY, columns: 120 } };
}

describe('the progress bar', () => {
  it('on a terminal redraws one line: step/steps, %, bar, loss, tokens/s, ETA', () => {
    let now = 0;
    const { writes, sink: s } = sink(true);
    const bar = new ProgressBar(s, { label: 'pretrain', total: 100, now: () => now, redrawMs: 100 });
    now = 2000;
    bar.update({ step: 25, loss: 2.5, tokens: 50_000 });
    now = 2050;
    bar.update({ step: 26, loss: 2.4, tokens: 2_000 }); // within redrawMs: not drawn
    now = 4000;
    bar.update({ step: 50, loss: 2.0, evalLoss: 2.2, tokens: 48_000 });
    bar.finish();
    expect(writes).toHaveLength(3);
    expect(writes[0]).toBe('\r\x1b[Kpretrain  step 25/100   25%  [#####...............]  loss 2.5000  25.0k tok/s  ETA 6s');
    expect(writes[1]).toBe('\r\x1b[Kpretrain  step 50/100   50%  [##########..........]  loss 2.0000  eval 2.2000  25.0k tok/s  ETA 4s');
    expect(writes[2]).toBe('\n');
  });

  it('elsewhere prints a plain line each 10%, so logs stay readable', () => {
    let now = 0;
    const { writes, sink: s } = sink(false);
    const bar = new ProgressBar(s, { label: 'mid', total: 50, start: 20, now: () => now });
    for (let step = 21; step <= 50; step++) {
      now += 100;
      bar.update({ step, loss: 1, tokens: 1000 });
    }
    expect(writes.map((w) => w.split('  ')[1])).toEqual(['step 25/50', 'step 30/50', 'step 35/50', 'step 40/50', 'step 45/50', 'step 50/50']);
    expect(writes.every((w) => w.endsWith('\n') && !w.includes('\r'))).toBe(true);
    expect(writes.at(-1)).toMatch(/100%  loss 1\.0000  10\.0k tok\/s  in 3s\n$/);
  });

  it('names its steps (evals, questions) when told', () => {
    const { writes, sink: s } = sink(false);
    const bar = new ProgressBar(s, { label: 'sft evals', unit: 'eval', total: 2, everyPercent: 100, now: () => 0 });
    bar.update({ step: 1, tokens: 0 });
    bar.update({ step: 2, tokens: 0 });
    expect(writes).toEqual(['sft evals  eval 2/2  100%  in 0s\n']); // off a terminal: one line, at the end
  });

  it('formats durations', () => {
    expect([formatSeconds(42), formatSeconds(187), formatSeconds(3723)]).toEqual(['42s', '3:07', '1:02:03']);
  });
});
