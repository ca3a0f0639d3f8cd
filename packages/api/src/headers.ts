/**
 * The API's own HTTP headers, for clients that import nothing else of the
 * server (`@pedigree/api/headers`).
 */

/** On a write's response: the highest position it appended. */
export const POSITION_HEADER = 'x-pedigree-position';
/** On a read: a position it must include (read-your-writes; see reads.ts). */
export const MIN_POSITION_HEADER = 'x-pedigree-min-position';
