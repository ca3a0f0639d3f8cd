import { z } from 'zod';
import { GPU_MODES, type GpuMode } from './kernels/backend.ts';

/**
 * The trainer's settings from the environment: read and checked here and
 * nowhere else in the trainer; what uses one takes it as an option. (DISPLAY
 * is the X server's, not ours: headlessgl reads it where it opens a context,
 * and startVirtualDisplay sets it; CI is read only by the kernel tests'
 * helper.) docs/environment.md lists every variable Pedigree reads.
 */
export interface TrainerEnv {
  /** PEDIGREE_GPU_MODE: the gpu.js mode of a model whose backend is `auto`; unset: the best mode usable here. */
  gpuMode: GpuMode | undefined;
}

export function readTrainerEnv(source: NodeJS.ProcessEnv = process.env): TrainerEnv {
  const gpuMode = source.PEDIGREE_GPU_MODE?.trim() || undefined;
  const parsed = z.enum(GPU_MODES).optional().safeParse(gpuMode);
  if (!parsed.success) throw new Error(`unknown gpu.js mode "${gpuMode}" (PEDIGREE_GPU_MODE); expected one of ${GPU_MODES.join(', ')}`);
  return { gpuMode: parsed.data };
}
