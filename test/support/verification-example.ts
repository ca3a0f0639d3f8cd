import { createPrivateKey, createPublicKey } from 'node:crypto';
import { canonicalJson, eventHash, GENESIS_HASH, leafHash, signCheckpoint, verifierKeyString, walkTree, type StoredEvent } from '@pedigree/ledger';

/**
 * The worked example of docs/ledger-verification.md, computed by Pedigree's
 * own code: three events in two streams (positions 1, 2 and 4: a gap at 3),
 * a checkpoint of the first two signed with a published test key, and the
 * consistency proof from 2 to 3. test/ledger-verification.doc.test.ts checks
 * that every value the page shows is this one.
 */

/** A test key for the example only, published with it: its seed is the bytes 0x00…0x1f. Never sign anything real with it. */
export const EXAMPLE_SEED = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
export const EXAMPLE_KEY = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), EXAMPLE_SEED]), format: 'der', type: 'pkcs8' });
export const EXAMPLE_ORIGIN = 'pedigree.local/example';

const projectId = '11111111-1111-4111-8111-111111111111';
const runId = '22222222-2222-4222-8222-222222222222';

type Unhashed = Omit<StoredEvent, 'prevHash' | 'hash'>;
const unhashed: Unhashed[] = [
  {
    position: 1,
    streamId: `project-${projectId}`,
    streamVersion: 1,
    eventId: 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaa1',
    projectId,
    type: 'ProjectCreated',
    schemaVersion: 1,
    data: { projectId, name: 'démo' },
    metadata: { actor: 'cli' },
    recordedAt: new Date('2026-11-30T12:00:00.000Z'),
  } as Unhashed,
  {
    position: 2,
    streamId: `run-${runId}`,
    streamVersion: 1,
    eventId: 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaa2',
    projectId,
    type: 'RunCreated',
    schemaVersion: 1,
    data: { runId, projectId, name: 'pretrain', kind: 'pretrain', environment: {} },
    metadata: {},
    recordedAt: new Date('2026-11-30T12:00:01.000Z'),
  } as Unhashed,
  {
    position: 4,
    streamId: `run-${runId}`,
    streamVersion: 2,
    eventId: 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaa3',
    projectId,
    type: 'HyperparametersDeclared',
    schemaVersion: 1,
    data: { values: { lr: 3e-4, rope_base: 10_000, warmup: 1e21 } },
    metadata: {},
    recordedAt: new Date('2026-11-30T12:00:02.500Z'),
  } as Unhashed,
];

export async function workedExample() {
  const heads = new Map<string, string>();
  const events: StoredEvent[] = [];
  const canonical: string[] = [];
  for (const e of unhashed) {
    const prevHash = heads.get(e.streamId) ?? GENESIS_HASH;
    const hash = eventHash(prevHash, e);
    const { position: _p, ...body } = e;
    canonical.push(canonicalJson({ ...body, recordedAt: e.recordedAt.toISOString() }));
    events.push({ ...e, prevHash, hash } as StoredEvent);
    heads.set(e.streamId, hash);
  }
  const leaves = events.map((e) => leafHash(Buffer.from(e.hash, 'hex')));
  const tree = await walkTree(leaves, { roots: [1, 2, 3], consistency: { from: 2, to: 3 }, inclusion: { index: 0, size: 3 } });
  const publicKey = createPublicKey(EXAMPLE_KEY);
  const checkpoint = signCheckpoint(
    { origin: EXAMPLE_ORIGIN, treeSize: 2, rootHash: tree.roots.get(2)!, timestamp: new Date('2026-11-30T12:00:05.000Z'), lastPosition: 2 },
    EXAMPLE_KEY,
  );
  return {
    events,
    /** The exact string hashed for each event, after its previous hash. */
    canonical,
    leaves: leaves.map((l) => l.toString('hex')),
    roots: { 1: tree.roots.get(1)!.toString('hex'), 2: tree.roots.get(2)!.toString('hex'), 3: tree.root.toString('hex') },
    root2Base64: tree.roots.get(2)!.toString('base64'),
    consistency2to3: tree.consistency!.map((h) => h.toString('hex')),
    inclusion0in3: tree.inclusion!.map((h) => h.toString('hex')),
    checkpoint,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKeyRaw: Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64'),
    verifierKey: verifierKeyString(EXAMPLE_ORIGIN, publicKey),
  };
}
