import { MAX_KEY, MAX_NAME, MAX_POINTS_PER_BATCH, RUN_KINDS } from '@pedigree/ledger';
import { z } from 'zod';

/**
 * Shapes and limits checked at the edge, before anything reaches the ledger.
 * The ledger validates again, in depth (its errors come back as BAD_REQUEST
 * with `data.issues`); these catch wrong types, missing fields and oversize
 * input with zod's own messages (`data.zodError`).
 */
export const Uuid = z.uuid({ error: 'must be a UUID' });
export const EventId = Uuid.optional().describe('client-chosen event id: a retry with the same id is a no-op');
export const Name = z.string().trim().min(1, 'must not be empty').max(MAX_NAME, `at most ${MAX_NAME} characters`);
export const ProjectRef = z.string().min(1).max(MAX_NAME).describe('project id or name');
export const RunRef = z.string().min(4).max(36).describe('run id, or a unique prefix of one');
export const Step = z.number().int().min(0);
export const JsonRecord = z.record(z.string().max(MAX_KEY), z.unknown());
export const RunKind = z.enum(RUN_KINDS);

/** Every number, NaN and ±Infinity included: the ledger refuses the non-finite ones unless `allowNonFinite`. */
const AnyNumber = z.custom<number>((v) => typeof v === 'number', { error: 'must be a number' });

export const MetricPoint = z.object({
  key: z.string().min(1).max(MAX_KEY),
  step: Step,
  value: AnyNumber,
  time: z.number().nonnegative().optional(),
});

export const MetricBatch = z
  .array(MetricPoint)
  .min(1, 'at least one point')
  .max(MAX_POINTS_PER_BATCH, `at most ${MAX_POINTS_PER_BATCH} points per call: split the batch`);

export const InputRefs = z.array(z.object({ artifactId: Uuid, role: z.string().min(1).max(MAX_KEY) })).max(1000);
export const Tags = z.array(z.string().min(1).max(MAX_KEY)).max(100);
