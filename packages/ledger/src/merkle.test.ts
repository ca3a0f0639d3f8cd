import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyProofRanges,
  EMPTY_ROOT,
  inclusionProofRanges,
  leafHash,
  MerkleFrontier,
  nodeHash,
  splitPoint,
  verifyConsistency,
  verifyInclusion,
  walkTree,
} from './merkle.ts';

/**
 * The tree against two references: the test vectors of Certificate
 * Transparency's reference implementation (github.com/transparency-dev/merkle,
 * proof/verify_test.go and rfc6962 — the leaves, roots and proofs every CT
 * implementation is checked against), and a naive transcription of RFC 9162
 * §2.1's recursive definitions (MTH, PATH, PROOF/SUBPROOF) over whole arrays,
 * compared on random sizes.
 */

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const dh = (h: string) => Buffer.from(h, 'hex');

// transparency-dev/merkle proof/verify_test.go: `leaves`, `roots` (sizes 1…8), inclusionProofs, consistencyProofs.
const CT_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(dh);
const CT_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const CT_EMPTY_ROOT = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** leaf is 1-based there. */
const CT_INCLUSION: { leaf: number; size: number; proof: string[] }[] = [
  { leaf: 1, size: 8, proof: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'] },
  { leaf: 6, size: 8, proof: ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
  { leaf: 3, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  { leaf: 2, size: 5, proof: ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'] },
];
const CT_CONSISTENCY: { size1: number; size2: number; proof: string[] }[] = [
  { size1: 1, size2: 1, proof: [] },
  { size1: 1, size2: 8, proof: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'] },
  { size1: 6, size2: 8, proof: ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
  { size1: 2, size2: 5, proof: ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b'] },
  { size1: 6, size2: 7, proof: ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'] },
];
const rootOfSize = (size: number) => (size === 0 ? dh(CT_EMPTY_ROOT) : dh(CT_ROOTS[size - 1]!));

// RFC 9162 §2.1, transcribed recursively over whole arrays: the reference the streaming code is compared with.
function naiveMth(d: readonly Buffer[]): Buffer {
  if (d.length === 0) return createHash('sha256').digest();
  if (d.length === 1) return leafHash(d[0]!);
  const k = splitPoint(d.length);
  return nodeHash(naiveMth(d.slice(0, k)), naiveMth(d.slice(k)));
}
function naivePath(m: number, d: readonly Buffer[]): Buffer[] {
  if (d.length === 1) return [];
  const k = splitPoint(d.length);
  return m < k ? [...naivePath(m, d.slice(0, k)), naiveMth(d.slice(k))] : [...naivePath(m - k, d.slice(k)), naiveMth(d.slice(0, k))];
}
function naiveSubproof(m: number, d: readonly Buffer[], b: boolean): Buffer[] {
  const n = d.length;
  if (m === n) return b ? [] : [naiveMth(d)];
  const k = splitPoint(n);
  return m <= k ? [...naiveSubproof(m, d.slice(0, k), b), naiveMth(d.slice(k))] : [...naiveSubproof(m - k, d.slice(k), false), naiveMth(d.slice(0, k))];
}
const naiveProof = (m: number, d: readonly Buffer[]) => (m === 0 ? [] : naiveSubproof(m, d, true));

const leafHashesOf = (d: readonly Buffer[]) => d.map(leafHash);
const flipBit = (b: Uint8Array, bit: number) => {
  const copy = Buffer.from(b);
  copy[Math.floor(bit / 8) % copy.length]! ^= 1 << bit % 8;
  return copy;
};

describe('Merkle tree (RFC 9162 §2.1)', () => {
  it('hashes leaves and nodes with the 0x00 / 0x01 prefixes, and the empty tree as SHA-256 of nothing', () => {
    expect(hex(EMPTY_ROOT)).toBe(CT_EMPTY_ROOT);
    expect(hex(leafHash(Buffer.alloc(0)))).toBe(CT_ROOTS[0]);
    expect(hex(nodeHash(leafHash(CT_LEAVES[0]!), leafHash(CT_LEAVES[1]!)))).toBe(CT_ROOTS[1]);
  });

  it('gives the reference roots for sizes 0…8 (Certificate Transparency test vectors)', async () => {
    for (let size = 0; size <= 8; size++) {
      const { root, roots } = await walkTree(leafHashesOf(CT_LEAVES.slice(0, size)), { roots: [size] });
      expect(hex(root), `size ${size}`).toBe(hex(rootOfSize(size)));
      expect(hex(roots.get(size)!)).toBe(hex(rootOfSize(size)));
    }
    // All the intermediate roots from one pass.
    const all = await walkTree(leafHashesOf(CT_LEAVES), { roots: [0, 1, 2, 3, 4, 5, 6, 7, 8] });
    for (let size = 0; size <= 8; size++) expect(hex(all.roots.get(size)!)).toBe(hex(rootOfSize(size)));
  });

  it('builds and checks the reference inclusion proofs, and refuses each corrupted one', async () => {
    for (const v of CT_INCLUSION) {
      const index = v.leaf - 1;
      const { inclusion } = await walkTree(leafHashesOf(CT_LEAVES), { inclusion: { index, size: v.size } });
      expect(inclusion!.map(hex), `leaf ${index} of ${v.size}`).toEqual(v.proof);
      const proof = v.proof.map(dh);
      const leaf = leafHash(CT_LEAVES[index]!);
      const root = rootOfSize(v.size);
      expect(verifyInclusion(index, v.size, leaf, proof, root)).toBe(true);
      // The probes of transparency-dev's corruptInclusionProof.
      const probes: [number, number, Uint8Array, Uint8Array[], Uint8Array][] = [
        [index - 1, v.size, leaf, proof, root],
        [index + 1, v.size, leaf, proof, root],
        [index ^ 2, v.size, leaf, proof, root],
        [index, v.size * 2, leaf, proof, root],
        [index, Math.floor(v.size / 2), leaf, proof, root],
        [index, v.size, Buffer.from('WrongLeaf'), proof, root],
        [index, v.size, leaf, proof, EMPTY_ROOT],
        [index, v.size, leaf, [...proof, Buffer.alloc(0)], root],
        [index, v.size, leaf, [...proof, root], root],
        [index, v.size, leaf, [root, ...proof], root],
        [index, v.size, leaf, proof.slice(0, -1), root],
        ...proof.map((_, i): [number, number, Uint8Array, Uint8Array[], Uint8Array] => [index, v.size, leaf, proof.map((p, j) => (i === j ? flipBit(p, 3) : p)), root]),
      ];
      for (const [i, size, l, p, r] of probes) expect(verifyInclusion(i, size, l, p, r), `probe ${i}/${size}`).toBe(false);
    }
  });

  it('builds and checks the reference consistency proofs, and refuses each corrupted one', async () => {
    for (const v of CT_CONSISTENCY) {
      const { consistency } = await walkTree(leafHashesOf(CT_LEAVES), { consistency: { from: v.size1, to: v.size2 } });
      expect(consistency!.map(hex), `${v.size1} → ${v.size2}`).toEqual(v.proof);
      const proof = v.proof.map(dh);
      const r1 = rootOfSize(v.size1);
      const r2 = rootOfSize(v.size2);
      expect(verifyConsistency(v.size1, v.size2, r1, r2, proof)).toBe(true);
      if (proof.length === 0) continue;
      // The probes of transparency-dev's corruptConsistencyProof.
      const probes: [number, number, Uint8Array, Uint8Array, Uint8Array[]][] = [
        [v.size1 - 1, v.size2, r1, r2, proof],
        [v.size1 + 1, v.size2, r1, r2, proof],
        [v.size1 ^ 2, v.size2, r1, r2, proof],
        [v.size1, v.size2 * 2, r1, r2, proof],
        [v.size1, Math.floor(v.size2 / 2), r1, r2, proof],
        [v.size1, v.size2, Buffer.from('WrongRoot'), r2, proof],
        [v.size1, v.size2, r1, Buffer.from('WrongRoot'), proof],
        [v.size1, v.size2, r2, r1, proof],
        [v.size1, v.size2, r1, r2, []],
        [v.size1, v.size2, r1, r2, [...proof, Buffer.alloc(0)]],
        [v.size1, v.size2, r1, r2, [...proof, r1]],
        [v.size1, v.size2, r1, r2, [...proof, r2]],
        [v.size1, v.size2, r1, r2, [Buffer.alloc(0), ...proof]],
        [v.size1, v.size2, r1, r2, [r1, ...proof]],
        [v.size1, v.size2, r1, r2, [r2, ...proof]],
        [v.size1, v.size2, r1, r2, [proof[0]!, ...proof]],
        [v.size1, v.size2, r1, r2, proof.slice(0, -1)],
        ...proof.map((_, i): [number, number, Uint8Array, Uint8Array, Uint8Array[]] => [v.size1, v.size2, r1, r2, proof.map((p, j) => (i === j ? flipBit(p, 4) : p))]),
      ];
      for (const [m, n, a, b, p] of probes) expect(verifyConsistency(m, n, a, b, p), `probe ${m}→${n}`).toBe(false);
    }
  });

  it('answers the edge cases as transparency-dev’s TestVerifyConsistency does', () => {
    const root1 = Buffer.from("don't care 1");
    const root2 = Buffer.from("don't care 2");
    const empty = EMPTY_ROOT;
    const cases: [number, number, Uint8Array, Uint8Array, Uint8Array[], boolean][] = [
      [0, 0, root1, root2, [], false],
      [1, 1, root1, root2, [], false],
      [0, 0, empty, empty, [], true],
      [0, 1, root1, root2, [], true], // every tree extends the empty one
      [1, 1, rootOfSize(1), rootOfSize(1), [], true],
      [1, 0, root1, root2, [], false], // time travel
      [2, 1, root1, root2, [], false],
      [1, 2, root1, root2, [], false], // empty proof
      [0, 0, empty, root2, [], false],
      [1, 1, empty, root2, [], false],
      [0, 0, empty, empty, [empty], false], // roots match but the proof is not empty
      [0, 1, empty, empty, [empty], false],
      [1, 1, empty, empty, [empty], false],
    ];
    for (const [m, n, a, b, p, ok] of cases) expect(verifyConsistency(m, n, a, b, p), `${m}→${n}`).toBe(ok);
  });

  it('matches the naive RFC transcription on random sizes: roots, consistency and inclusion proofs', async () => {
    const leaves = Array.from({ length: 300 }, (_, i) => Buffer.concat([Buffer.from(`${i}`), createHash('sha256').update(`leaf ${i}`).digest().subarray(0, i % 7)]));
    const hashes = leafHashesOf(leaves);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n }), fc.integer({ min: 0, max: n - 1 }))),
        async ([n, m, index]) => {
          const d = leaves.slice(0, n);
          const result = await walkTree(hashes, { roots: [m, n], consistency: { from: m, to: n }, inclusion: { index, size: n } }, n);
          expect(result.size).toBe(n);
          expect(hex(result.root)).toBe(hex(naiveMth(d)));
          expect(hex(result.roots.get(m)!)).toBe(hex(naiveMth(d.slice(0, m))));
          expect(result.consistency!.map(hex)).toEqual(naiveProof(m, d).map(hex));
          expect(result.inclusion!.map(hex)).toEqual(naivePath(index, d).map(hex));
          expect(verifyConsistency(m, n, result.roots.get(m)!, result.root, result.consistency!)).toBe(true);
          expect(verifyInclusion(index, n, hashes[index]!, result.inclusion!, result.root)).toBe(true);
          // A different first tree, or a flipped bit anywhere in the proof, fails.
          if (m > 0 && m < n) {
            expect(verifyConsistency(m, n, flipBit(result.roots.get(m)!, 0), result.root, result.consistency!)).toBe(false);
            const bit = (m * 31 + n) % (result.consistency!.length * 256);
            const i = Math.floor(bit / 256);
            const bad = result.consistency!.map((p, j) => (j === i ? flipBit(p, bit % 256) : p));
            expect(verifyConsistency(m, n, result.roots.get(m)!, result.root, bad)).toBe(false);
          }
          if (n > 1) expect(verifyInclusion(index, n, hashes[(index + 1) % n]!, result.inclusion!, result.root)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps O(log n) state: the frontier holds one hash per set bit of the size', () => {
    const frontier = new MerkleFrontier();
    const leaf = Buffer.from('x');
    for (let i = 0; i < (1 << 12) + 5; i++) frontier.push(leaf);
    const n = frontier.size;
    expect((frontier as unknown as { nodes: unknown[] }).nodes.length).toBe(n.toString(2).replace(/0/g, '').length);
    expect(hex(frontier.root())).toBe(hex(naiveMth(Array.from({ length: n }, () => leaf))));
  });

  it('names the proof nodes without reading any leaf, and refuses what cannot exist', () => {
    expect(consistencyProofRanges(3, 7)).toEqual([
      { start: 2, end: 3 },
      { start: 3, end: 4 },
      { start: 0, end: 2 },
      { start: 4, end: 7 },
    ]);
    expect(inclusionProofRanges(0, 1)).toEqual([]);
    expect(() => consistencyProofRanges(5, 4)).toThrow(/smaller size/);
    expect(() => inclusionProofRanges(4, 4)).toThrow(/not in a tree/);
    // Sizes past 2^31 are computed arithmetically, never wrapped by 32-bit operators.
    const big = consistencyProofRanges(2 ** 40 + 3, 2 ** 41 + 1);
    expect(big.every((r) => r.start >= 0 && r.end <= 2 ** 41 + 1 && r.end > r.start)).toBe(true);
  });

  it('refuses a root or proof beyond the leaves it read', async () => {
    await expect(walkTree(leafHashesOf(CT_LEAVES.slice(0, 3)), { roots: [4] })).rejects.toThrow(/only 3 leaves were read/);
    await expect(walkTree(leafHashesOf(CT_LEAVES.slice(0, 3)), { consistency: { from: 2, to: 5 } })).rejects.toThrow(/only 3 were read/);
  });
});
