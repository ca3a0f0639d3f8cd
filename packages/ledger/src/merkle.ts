import { createHash } from 'node:crypto';

/**
 * The Merkle tree of RFC 9162 (Certificate Transparency v2, §2.1), the same
 * tree as RFC 6962's, over a log read as a stream:
 *
 *   leaf hash  = SHA-256(0x00 || leaf bytes)
 *   node hash  = SHA-256(0x01 || left || right)
 *   MTH({})    = SHA-256()                                   (the empty string)
 *   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of 2 < n
 *
 * Sizes and indexes are JS numbers (exact to 2^53) and every bit operation is
 * done arithmetically, so nothing wraps at 2^31. Leaves arrive in order and
 * only the right frontier (one hash per set bit of the size) is kept: the root
 * of any size, and the nodes of a consistency or inclusion proof, come out of
 * one pass in O(log n) memory.
 */

export const HASH_BYTES = 32;
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** MTH({}): the root of the empty tree. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

export function leafHash(leaf: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(leaf).digest();
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** The largest power of 2 smaller than n (n ≥ 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const isOdd = (x: number) => x % 2 === 1;
const half = (x: number) => Math.floor(x / 2);

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} must be a whole number from 0 to 2^53-1, got ${n}`);
}

/** A node of the tree: the leaves [start, end). Perfect subtrees and the right edge's subtrees are the only nodes a proof names. */
export interface NodeRange {
  start: number;
  end: number;
}

/**
 * The nodes of the consistency proof from size m to size n (RFC 9162
 * §2.1.4.1, SUBPROOF), in proof order. Empty when m = 0 or m = n.
 */
export function consistencyProofRanges(m: number, n: number): NodeRange[] {
  checkSize('the first size', m);
  checkSize('the second size', n);
  if (m > n) throw new RangeError(`no consistency proof from size ${m} to the smaller size ${n}`);
  if (m === 0 || m === n) return [];
  const out: NodeRange[] = [];
  // SUBPROOF(m, D[start:end], b), unrolled: each step appends one sibling, outermost last.
  const siblings: NodeRange[] = [];
  let start = 0;
  let end = n;
  let sub = m;
  let complete = true;
  for (;;) {
    const size = end - start;
    if (sub === size) {
      if (!complete) out.push({ start, end });
      break;
    }
    const k = splitPoint(size);
    if (sub <= k) {
      siblings.push({ start: start + k, end });
      end = start + k;
    } else {
      siblings.push({ start, end: start + k });
      start += k;
      sub -= k;
      complete = false;
    }
  }
  for (let i = siblings.length - 1; i >= 0; i--) out.push(siblings[i]!);
  return out;
}

/** The nodes of the inclusion proof of leaf `index` in a tree of size n (RFC 9162 §2.1.3.1, PATH), in proof order. */
export function inclusionProofRanges(index: number, n: number): NodeRange[] {
  checkSize('the tree size', n);
  if (!Number.isSafeInteger(index) || index < 0 || index >= n) throw new RangeError(`leaf ${index} is not in a tree of ${n} leaves`);
  const siblings: NodeRange[] = [];
  let start = 0;
  let end = n;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (index < start + k) {
      siblings.push({ start: start + k, end });
      end = start + k;
    } else {
      siblings.push({ start, end: start + k });
      start += k;
    }
  }
  return siblings.reverse();
}

/**
 * The right frontier of a tree grown one leaf at a time: for each set bit of
 * the size, the root of the perfect subtree it stands for, largest (leftmost)
 * first. O(log n) hashes whatever the size.
 */
export class MerkleFrontier {
  private readonly nodes: Buffer[] = [];
  private readonly heights: number[] = [];
  private count = 0;

  /**
   * Called for each perfect subtree completed by a push: the leaves
   * [start, end) and its hash (a single leaf too: end = start + 1).
   */
  constructor(private readonly onNode?: (start: number, end: number, hash: Buffer) => void) {}

  get size(): number {
    return this.count;
  }

  /** Adds the next leaf, given its leaf hash (see `leafHash`). */
  pushLeafHash(hash: Buffer): void {
    if (hash.length !== HASH_BYTES) throw new RangeError(`a leaf hash has ${HASH_BYTES} bytes, got ${hash.length}`);
    let node = hash;
    let height = 0;
    const end = this.count + 1;
    this.onNode?.(this.count, end, node);
    while (this.heights.length > 0 && this.heights[this.heights.length - 1] === height) {
      this.heights.pop();
      node = nodeHash(this.nodes.pop()!, node);
      height++;
      this.onNode?.(end - 2 ** height, end, node);
    }
    this.nodes.push(node);
    this.heights.push(height);
    this.count = end;
  }

  push(leaf: Uint8Array): void {
    this.pushLeafHash(leafHash(leaf));
  }

  /** MTH of the leaves so far. */
  root(): Buffer {
    return this.rootFrom(0);
  }

  /**
   * MTH(D[start:size]) where [start, size) is a node on the tree's right edge
   * (start a multiple of the largest power of 2 not above size − start): the
   * fold of the frontier's subtrees from `start` on.
   */
  rootFrom(start: number): Buffer {
    if (this.count === start) {
      if (start === 0) return EMPTY_ROOT;
      throw new RangeError(`no node starts at the end of the tree (${start})`);
    }
    let acc: Buffer | undefined;
    let end = this.count;
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const width = 2 ** this.heights[i]!;
      const nodeStart = end - width;
      if (nodeStart < start) throw new RangeError(`[${start}, ${this.count}) is not a node of a tree of ${this.count} leaves`);
      acc = acc ? nodeHash(this.nodes[i]!, acc) : this.nodes[i]!;
      end = nodeStart;
      if (nodeStart === start) return acc;
    }
    throw new RangeError(`[${start}, ${this.count}) is not a node of a tree of ${this.count} leaves`);
  }
}

/** What one pass over the leaves should produce. */
export interface TreeRequest {
  /** Tree sizes whose root is wanted (each at most the number of leaves read). */
  roots?: number[];
  /** A consistency proof from `from` to `to` (to ≤ the leaves read). */
  consistency?: { from: number; to: number };
  /** An inclusion proof of leaf `index` in the tree of size `size`. */
  inclusion?: { index: number; size: number };
}

export interface TreeResult {
  /** How many leaves were read. */
  size: number;
  /** MTH of all the leaves read. */
  root: Buffer;
  roots: Map<number, Buffer>;
  consistency?: Buffer[];
  inclusion?: Buffer[];
}

/**
 * Reads leaf hashes in order (stopping after `limit`, when given) and answers
 * `request` in one pass, keeping O(log n) hashes. A wanted size or proof
 * beyond the leaves read is an error naming it.
 */
export async function walkTree(leafHashes: AsyncIterable<Buffer> | Iterable<Buffer>, request: TreeRequest = {}, limit = Infinity): Promise<TreeResult> {
  const wantedRoots = new Set(request.roots ?? []);
  const consistencyRanges = request.consistency ? consistencyProofRanges(request.consistency.from, request.consistency.to) : [];
  const inclusionRanges = request.inclusion ? inclusionProofRanges(request.inclusion.index, request.inclusion.size) : [];
  const proofNodes = new Map<string, Buffer>();
  // Perfect subtrees are caught as the frontier completes them; right-edge nodes are folded when their end size is reached.
  const perfectByEnd = new Map<number, number[]>();
  const edgeByEnd = new Map<number, number[]>();
  for (const r of [...consistencyRanges, ...inclusionRanges]) {
    const width = r.end - r.start;
    const perfect = isPowerOfTwo(width) && r.start % width === 0;
    const byEnd = perfect ? perfectByEnd : edgeByEnd;
    byEnd.set(r.end, [...(byEnd.get(r.end) ?? []), r.start]);
  }
  const roots = new Map<number, Buffer>();
  const frontier = new MerkleFrontier(
    perfectByEnd.size === 0
      ? undefined
      : (start, end, hash) => {
          if (perfectByEnd.get(end)?.includes(start)) proofNodes.set(`${start}:${end}`, hash);
        },
  );
  const atSize = (size: number) => {
    if (wantedRoots.has(size)) roots.set(size, frontier.root());
    for (const start of edgeByEnd.get(size) ?? []) proofNodes.set(`${start}:${size}`, frontier.rootFrom(start));
  };
  atSize(0);
  if (limit > 0) {
    for await (const hash of leafHashes) {
      frontier.pushLeafHash(hash);
      atSize(frontier.size);
      if (frontier.size >= limit) break;
    }
  }
  const size = frontier.size;
  for (const wanted of wantedRoots) if (wanted > size) throw new RangeError(`a root of size ${wanted} was asked for, but only ${size} leaves were read`);
  const collect = (ranges: NodeRange[]) =>
    ranges.map((r) => {
      const hash = proofNodes.get(`${r.start}:${r.end}`);
      if (!hash) throw new RangeError(`the proof needs leaves up to ${r.end}, but only ${size} were read`);
      return hash;
    });
  return {
    size,
    root: frontier.root(),
    roots,
    ...(request.consistency ? { consistency: collect(consistencyRanges) } : {}),
    ...(request.inclusion ? { inclusion: collect(inclusionRanges) } : {}),
  };
}

function isPowerOfTwo(x: number): boolean {
  if (x < 1) return false;
  while (x > 1) {
    if (isOdd(x)) return false;
    x = half(x);
  }
  return true;
}

const sameHash = (a: Uint8Array, b: Uint8Array) => a.length === HASH_BYTES && b.length === HASH_BYTES && Buffer.compare(a, b) === 0;

/**
 * RFC 9162 §2.1.4.2: does `proof` show that the tree of size `second` with
 * root `secondRoot` extends the tree of size `first` with root `firstRoot`?
 */
export function verifyConsistency(first: number, second: number, firstRoot: Uint8Array, secondRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) return false;
  if (proof.some((p) => p.length !== HASH_BYTES)) return false;
  if (first === second) return proof.length === 0 && sameHash(firstRoot, secondRoot);
  // Every tree extends the empty one.
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(first) ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Uint8Array = path[0]!;
  let sr: Uint8Array = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameHash(fr, firstRoot) && sameHash(sr, secondRoot);
}

/** RFC 9162 §2.1.3.2: does `proof` show leaf `index` (with leaf hash `leaf`) in the tree of size `size` with root `root`? */
export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  if (leaf.length !== HASH_BYTES || proof.some((p) => p.length !== HASH_BYTES)) return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameHash(r, root);
}
