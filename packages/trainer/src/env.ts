import { availableParallelism } from 'node:os';
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
  /** PEDIGREE_TRAIN_THREADS: 1, or 2 to split each training batch of the reference mode over two cores; unset: 2 where the machine has two cores or more. */
  threads: 1 | 2;
}

export function readTrainerEnv(source: NodeJS.ProcessEnv = process.env): TrainerEnv {
  const gpuMode = source.PEDIGREE_GPU_MODE?.trim() || undefined;
  const parsed = z.enum(GPU_MODES).optional().safeParse(gpuMode);
  if (!parsed.success) throw new Error(`unknown gpu.js mode "${gpuMode}" (PEDIGREE_GPU_MODE); expected one of ${GPU_MODES.join(', ')}`);
  const threads = source.PEDIGREE_TRAIN_THREADS?.trim() || undefined;
  if (threads !== undefined && threads !== '1' && threads !== '2') throw new Error(`PEDIGREE_TRAIN_THREADS must be 1 or 2, got "${threads}"`);
  return { gpuMode: parsed.data, threads: threads === undefined ? (availableParallelism() >= 2 ? 2 : 1) : threads === '2' ? 2 : 1 };
}
