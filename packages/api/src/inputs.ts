import { MAX_KEY, MAX_NAME, MAX_POINTS_PER_BATCH, RUN_KINDS } from '@pedigree/ledger';
import { MAX_PACKED_COLUMN, PACKED_FORMAT, type PackedPoints } from '@pedigree/ledger/packed';
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

/** A metric point as a client sends it (NaN and ±Infinity are numbers; `time` defaults to the server's clock). */
export interface MetricPointInput {
  key: string;
  step: number;
  value: number;
  time?: number;
}

/**
 * A batch of points. Only its size is checked here: each point is checked
 * once, by the ledger as it stores the batch (its errors name the field,
 * `points.<i>.<field>`, and the command refuses NaN/±Infinity unless
 * `allowNonFinite`), not parsed into objects a second time on the way.
 */
export const MetricBatch = z
  .array(z.unknown())
  .min(1, 'at least one point')
  .max(MAX_POINTS_PER_BATCH, `at most ${MAX_POINTS_PER_BATCH} points per call: split the batch`) as unknown as z.ZodType<MetricPointInput[]>;

/**
 * The same batch as columns (see @pedigree/ledger/packed): what the typed
 * client sends. Only the shape and sizes are checked here; the packing, then
 * each point, by the ledger.
 */
export const PackedBatch = z.object({
  format: z.literal(PACKED_FORMAT),
  n: z.number().int().min(1).max(MAX_POINTS_PER_BATCH, `at most ${MAX_POINTS_PER_BATCH} points per call: split the batch`),
  keys: z.array(z.string().max(MAX_KEY)).min(1).max(MAX_POINTS_PER_BATCH),
  keyIndex: z.string().max(MAX_PACKED_COLUMN).optional(),
  steps: z.string().max(MAX_PACKED_COLUMN),
  values: z.string().max(MAX_PACKED_COLUMN),
  times: z.string().max(MAX_PACKED_COLUMN),
}) as z.ZodType<PackedPoints>;

export const InputRefs = z.array(z.object({ artifactId: Uuid, role: z.string().min(1).max(MAX_KEY) })).max(1000);
/** Labels one call may add to a run (each a TagAdded event). */
const MAX_TAGS = 100;
export const Tags = z.array(z.string().min(1).max(MAX_KEY)).max(MAX_TAGS);

/**
 * Longest digest taken at the edge: only a bound, well above the one form the
 * ledger stores (`sha256:<64 hex>`, 71 characters), which it checks exactly.
 */
const MAX_DIGEST = 200;
export const Digest = z.string().max(MAX_DIGEST);
