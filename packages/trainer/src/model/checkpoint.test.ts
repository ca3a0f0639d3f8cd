import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../config.ts';
import { CheckpointError, decodeCheckpoint, loadCheckpoint, saveCheckpoint, sha256 } from './checkpoint.ts';
import { BigramModel } from './reference-model.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tensors = () => [
  { name: 'wte', shape: [3, 2], data: Float32Array.from([1, -2, 3.5, 1e-8, -0, 65504]) },
  { name: 'blm', shape: [3], data: Float32Array.from([0.1, 0.2, 0.3]) },
  { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
];

describe('checkpoints', () => {
  it('round-trip: tensors, shapes and metadata come back bit for bit, from a file named by its digest', async () => {
    const saved = await saveCheckpoint(dir, tensors(), { step: '7', note: 'ünïcode' });
    expect(saved.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(path.basename(saved.path)).toBe(`${saved.digest.slice(7)}.safetensors`);
    expect(saved.manifest).toEqual({ wte: [3, 2], blm: [3], empty: [0, 4] });
    const bytes = readFileSync(saved.path);
    expect(saved.bytes).toBe(bytes.length);
    expect(sha256(bytes)).toBe(saved.digest);

    const loaded = await loadCheckpoint(saved.path);
    expect(loaded.digest).toBe(saved.digest);
    expect(loaded.metadata).toEqual({ step: '7', note: 'ünïcode' });
    for (const t of tensors()) {
      expect(loaded.tensors.get(t.name)!.shape).toEqual(t.shape);
      expect(Buffer.from(loaded.tensors.get(t.name)!.data.buffer).equals(Buffer.from(t.data.buffer))).toBe(true);
    }
  });

  it('is the safetensors layout: u64 LE header length, JSON header, aligned F32 data', async () => {
    const saved = await saveCheckpoint(dir, tensors());
    const bytes = readFileSync(saved.path);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    expect(header.wte).toEqual({ dtype: 'F32', shape: [3, 2], data_offsets: [0, 24] });
    expect(header.blm).toEqual({ dtype: 'F32', shape: [3], data_offsets: [24, 36] });
    expect(bytes.readFloatLE(8 + headerLength + 8)).toBe(3.5);
    expect(bytes.length).toBe(8 + headerLength + 36);
  });

  it('saving the same tensors twice gives one file; no temporary files are left', async () => {
    const a = await saveCheckpoint(dir, tensors(), { same: 'yes' });
    const b = await saveCheckpoint(dir, tensors(), { same: 'yes' });
    expect(b).toEqual(a);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses a corrupted file, naming both digests', async () => {
    const saved = await saveCheckpoint(dir, tensors(), { which: 'to corrupt' });
    const bytes = readFileSync(saved.path);
    bytes[bytes.length - 1]! ^= 0x01; // one bit of one weight
    writeFileSync(saved.path, bytes);
    const err = await loadCheckpoint(saved.path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(new RegExp(`checkpoint .* is corrupted: its bytes hash to sha256:[0-9a-f]{64}, but it was saved as ${saved.digest}; refusing to load it`));
    // the expected digest may also come from the ledger rather than the file name
    const copy = path.join(dir, 'renamed.safetensors');
    writeFileSync(copy, bytes);
    await expect(loadCheckpoint(copy, { digest: saved.digest })).rejects.toThrow(/is corrupted/);
  });

  it('refuses truncated and malformed files with the reason', () => {
    const good = new Uint8Array(readFileSync(readdirSync(dir).map((f) => path.join(dir, f)).find((f) => f.endsWith('.safetensors'))!));
    expect(() => decodeCheckpoint(good.subarray(0, 5))).toThrow(/shorter than the 8-byte header length/);
    expect(() => decodeCheckpoint(good.subarray(0, 40))).toThrow(/the header claims \d+ bytes/);
    expect(() => decodeCheckpoint(good.subarray(0, good.length - 4))).toThrow(/data_offsets .* do not fit/);
  });

  it('saves and restores a model: the same loss after loading into a fresh one', async () => {
    const cfg = parseConfig({ model: { vocab: 32, dModel: 8 }, data: { sources: [{ name: 'w', generator: 'language', weight: 1 }] } });
    const a = new BigramModel(cfg.model);
    const inputs = Int32Array.from({ length: 16 }, (_, i) => 17 + (i % 15));
    const targets = Int32Array.from({ length: 16 }, (_, i) => 17 + ((i + 1) % 15));
    for (let t = 1; t <= 5; t++) {
      a.forwardBackward(inputs, targets, 2, 8);
      a.step(0.05, t, cfg.optimizer);
    }
    const saved = await saveCheckpoint(dir, [...a.parameters(), ...a.optimizerState()]);
    const b = new BigramModel({ ...cfg.model, seed: 99 });
    expect(b.evaluate(inputs, targets, 2, 8)).not.toBeCloseTo(a.evaluate(inputs, targets, 2, 8), 5);
    const loaded = await loadCheckpoint(saved.path);
    for (const t of [...b.parameters(), ...b.optimizerState()]) t.data.set(loaded.tensors.get(t.name)!.data);
    expect(b.evaluate(inputs, targets, 2, 8)).toBe(a.evaluate(inputs, targets, 2, 8));
  });
});
