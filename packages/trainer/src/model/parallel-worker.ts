/**
 * The worker side of parallel.ts: waits for a part of a batch on its port,
 * runs the reference forward and backward on it with the model's matmuls, answers
 * on the port (with the job's id) and then writes that id to the shared flag the
 * caller blocks on.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import { ModelConfigSchema } from '../config.ts';
import type { PartMessage, PartResult } from './parallel.ts';
import { buildParams, CPU_MATMUL, parameterSpecs, REFERENCE_MATMUL, transformerLossRef } from './transformer.ts';

const { flag, port } = workerData as { flag: Int32Array; port: MessagePort };

port.on('message', (job: PartMessage) => {
  let answer: PartResult | { error: string };
  try {
    const config = ModelConfigSchema.parse({ arch: 'transformer', ...job.model });
    const specs = parameterSpecs(config);
    const dims = { C: config.dModel, V: config.vocab, NH: config.heads, rope: { base: config.ropeBase } };
    const params = buildParams(specs, config.layers, (_, i) => job.params[i]!);
    const grads = job.params.map((p) => new Float32Array(p.length));
    const { loss } = transformerLossRef(params, job.inputs, job.targets, { ...dims, B: job.B, T: job.T }, (n) => new Float32Array(n), buildParams(specs, config.layers, (_, i) => grads[i]!), job.weights, job.matmul === 'cpu' ? CPU_MATMUL : REFERENCE_MATMUL);
    answer = { loss, counted: job.targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0), grads };
  } catch (err) {
    answer = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
  port.postMessage({ ...answer, id: job.id }, 'grads' in answer ? answer.grads.map((g) => g.buffer as ArrayBuffer) : []);
  // The id is written after the answer is posted: a caller that sees it finds the answer on the port.
  Atomics.store(flag, 0, job.id);
  Atomics.notify(flag, 0);
});
