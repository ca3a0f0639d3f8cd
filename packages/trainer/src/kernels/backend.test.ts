import { describe, expect, it } from 'vitest';
import { readTrainerEnv } from '../env.ts';
import { availableModes, createBackend, GPU_MODES, probeModes } from './backend.ts';
import { testBackends } from './testing.ts';

// Starts Xvfb when there is no display (see kernels/testing.ts), before anything probes.
await testBackends();

describe('backend selection', () => {
  it('probes every mode and says why one is not usable', () => {
    const probes = probeModes();
    expect(probes.map((p) => p.mode)).toEqual([...GPU_MODES]);
    for (const p of probes) expect(p.detail).not.toBe('');
    expect(availableModes()).toContain('cpu');
  });

  it('picks the best available mode by default, and records it', () => {
    const be = createBackend();
    expect(be.mode).toBe(availableModes()[0]);
    expect(be.describe()).toEqual({ gpuMode: be.mode, detail: expect.any(String) });
    be.destroy();
  });

  it('PEDIGREE_GPU_MODE (read by src/env.ts) names the mode a model on `auto` asks for', () => {
    expect(readTrainerEnv({}).gpuMode).toBeUndefined();
    expect(readTrainerEnv({ PEDIGREE_GPU_MODE: ' ' }).gpuMode).toBeUndefined();
    const fromEnv = createBackend({ mode: readTrainerEnv({ PEDIGREE_GPU_MODE: ' cpu ' }).gpuMode });
    expect(fromEnv.mode).toBe('cpu');
    expect(fromEnv.resident).toBe(false);
    fromEnv.destroy();
  });

  it('a bad or unusable requested mode is an error, not a silent downgrade', () => {
    expect(() => readTrainerEnv({ PEDIGREE_GPU_MODE: 'webgpu' })).toThrow(/unknown gpu.js mode "webgpu" \(PEDIGREE_GPU_MODE\)/);
    expect(() => createBackend({ mode: 'webgpu' as never })).toThrow(/unknown gpu.js mode "webgpu"/);
    const missing = probeModes().find((p) => !p.available);
    if (missing) expect(() => createBackend({ mode: missing.mode })).toThrow(/not usable here/);
  });

  it('keeps tensors on the device only where there is one; read and release work everywhere', () => {
    for (const mode of availableModes()) {
      const be = createBackend({ mode });
      const t = be.upload(Float32Array.of(1, 2, 3));
      expect(t instanceof Float32Array).toBe(mode !== 'headlessgl');
      expect([...be.read(t)]).toEqual([1, 2, 3]);
      be.release(t, null, undefined);
      be.sync();
      be.destroy();
    }
  });
});
