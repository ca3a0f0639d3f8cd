import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultHome } from '@pedigree/db';
import { afterAll, describe, expect, it } from 'vitest';
import type { ClientTarget } from '../client.ts';
import { resultsFile } from './demo.ts';

const at = (where: ClientTarget) => ({ clientTarget: () => where });
const embedded = (dir: string) => at({ kind: 'embedded', store: { dir } });
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pedigree-demo-out-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('where `pedigree demo` writes results.md', () => {
  it('in the store\'s directory by default, one folder per project, its name made safe for a path', () => {
    expect(resultsFile(embedded('/s'), { project: 'phi4-recipe' })).toBe(path.resolve('/s/results/phi4-recipe/results.md'));
    expect(resultsFile(embedded('/s'), { project: '../x y/..' })).toBe(path.resolve('/s/results/..-x-y-../results.md'));
    expect(resultsFile(embedded('/s'), { project: '..' })).toBe(path.resolve('/s/results/project/results.md'));
    // the store `pedigree start` serves, recorded through it
    expect(resultsFile(at({ kind: 'server', url: 'http://x', serving: { pid: 1, url: 'http://x', dir: '/served' } }), { project: 'p', checkpoints: '/elsewhere/ck' })).toBe(path.resolve('/served/results/p/results.md'));
  });

  it('with a server and no store directory here: beside --checkpoints when given, else $PEDIGREE_HOME or ./.pedigree', () => {
    const server = at({ kind: 'server', url: 'http://x', serving: null });
    expect(resultsFile(server, { project: 'p', checkpoints: '/home/s/checkpoints' })).toBe(path.resolve('/home/s/results/p/results.md'));
    expect(resultsFile(server, { project: 'p' })).toBe(path.join(defaultHome(), 'results', 'p', 'results.md'));
    expect(resultsFile(at({ kind: 'embedded', store: { url: 'postgresql://db/x' } }), { project: 'p' })).toBe(path.join(defaultHome(), 'results', 'p', 'results.md'));
  });

  it('where --out says: a file, or results.md in a directory', () => {
    expect(resultsFile(embedded('/s'), { project: 'p', out: path.join(tmp, 'mine.md') })).toBe(path.join(tmp, 'mine.md'));
    expect(resultsFile(embedded('/s'), { project: 'p', out: tmp })).toBe(path.join(tmp, 'results.md')); // an existing directory
    expect(resultsFile(embedded('/s'), { project: 'p', out: `${path.join(tmp, 'new')}/` })).toBe(path.join(tmp, 'new', 'results.md'));
  });
});
