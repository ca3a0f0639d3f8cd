import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyOverrides, ConfigError, hyperparametersOf, loadConfig, parseConfig, splitAssignments } from './config.ts';
import { getLr } from './stages/schedule.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minimal = { data: { sources: [{ name: 'web', generator: 'language', weight: 1 }] } };

describe('config', () => {
  it('fills every default, including minLr = lr / 10 and each generator\'s params', () => {
    const cfg = parseConfig(minimal);
    expect(cfg.model).toEqual({ arch: 'bigram', vocab: 64, layers: 2, dModel: 64, heads: 4, context: 128, ropeBase: 500, seed: 1337 });
    expect(cfg.optimizer).toMatchObject({ lr: 3e-3, minLr: 3e-4, warmupSteps: 20, decay: 'linear' });
    expect(cfg.data.sources[0]).toMatchObject({ docs: 512, params: { minLength: 16, maxLength: 96, branching: 3, grammarSeed: 1 } });
    expect(hyperparametersOf(cfg)).toMatchObject({ d_model: 64, rope_base: 500, lr: 3e-3, schedule: 'warmup+linear', batch: 8 });
  });

  it('names the file and every bad field, one per line', () => {
    const file = path.join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        model: { vocab: 'big', dModel: 30, heads: 4 },
        optimzer: {},
        data: { sources: [{ name: 'web', generator: 'nope', weight: 1 }, { name: 'kv', generator: 'kv-recall', weight: 0.5, params: { pairs: 3 } }] },
      }),
    );
    let err: ConfigError | undefined;
    try {
      loadConfig(file);
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message.split('\n')[0]).toBe(`${file}: 4 problems:`);
    const byPath = Object.fromEntries(err!.issues.map((i) => [i.path, i.message]));
    expect(byPath['model.vocab']).toMatch(/expected number, received string/);
    expect(byPath['']).toMatch(/Unrecognized key: "optimzer"/);
    expect(byPath['data.sources.0.generator']).toMatch(/expected one of "language"\|"long-recall"/);
    expect(byPath['data.sources.1.params']).toMatch(/Unrecognized key: "pairs"/);
  });

  it('reports unreadable and malformed files with the file name', () => {
    expect(() => loadConfig(path.join(dir, 'missing.json'))).toThrow(/missing\.json: bad config:\n {2}\(top level\): cannot read: ENOENT/);
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{ "steps": 3, }');
    expect(() => loadConfig(file)).toThrow(/broken\.json: bad config:\n {2}\(top level\): not valid JSON/);
  });

  it('--set changes fields by path, parsing JSON values, and validates the result', () => {
    const raw = applyOverrides(minimal, splitAssignments('optimizer.lr=1e-4,model.context=512,name=mid train,data.sources.0.params={"branching":2},tags=["a","b"]'));
    const cfg = parseConfig(raw);
    expect(cfg.optimizer.lr).toBe(1e-4);
    expect(cfg.optimizer.minLr).toBeCloseTo(1e-5);
    expect(cfg.model.context).toBe(512);
    expect(cfg.name).toBe('mid train');
    expect(cfg.tags).toEqual(['a', 'b']);
    expect(cfg.data.sources[0]!.params.branching).toBe(2);
    expect(minimal).toEqual({ data: { sources: [{ name: 'web', generator: 'language', weight: 1 }] } }); // not mutated
    expect(() => parseConfig(applyOverrides(minimal, ['model.heads=3']))).toThrow(/model\.dModel: dModel must be a multiple of heads/);
    expect(() => applyOverrides(minimal, ['steps'])).toThrow(/expected key=value/);
  });
});

describe('getLr', () => {
  const cfg = parseConfig({ ...minimal, steps: 101, optimizer: { lr: 1, minLr: 0.1, warmupSteps: 10 } });

  it('warms up linearly, then decays linearly to minLr at the last step', () => {
    expect(getLr(0, cfg)).toBeCloseTo(0.1);
    expect(getLr(4, cfg)).toBeCloseTo(0.5);
    expect(getLr(9, cfg)).toBeCloseTo(1);
    expect(getLr(10, cfg)).toBeCloseTo(1);
    expect(getLr(55, cfg)).toBeCloseTo(0.55);
    expect(getLr(100, cfg)).toBeCloseTo(0.1);
    for (let s = 10; s < 100; s++) expect(getLr(s + 1, cfg)).toBeLessThan(getLr(s, cfg));
  });

  it('cosine decay meets linear at the ends and the middle', () => {
    const cos = { ...cfg, optimizer: { ...cfg.optimizer, decay: 'cosine' as const } };
    expect(getLr(10, cos)).toBeCloseTo(1);
    expect(getLr(55, cos)).toBeCloseTo(0.55);
    expect(getLr(100, cos)).toBeCloseTo(0.1);
    expect(getLr(30, cos)).toBeGreaterThan(getLr(30, cfg)); // cosine stays high longer
  });

  it('without warmup starts at the peak', () => {
    expect(getLr(0, { ...cfg, optimizer: { ...cfg.optimizer, warmupSteps: 0 } })).toBeCloseTo(1);
  });
});
