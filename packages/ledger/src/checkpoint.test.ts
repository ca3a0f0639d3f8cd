import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CheckpointError,
  checkpointText,
  noteKeyId,
  openCheckpoint,
  openNote,
  parseCheckpointText,
  parseSignedNote,
  signCheckpoint,
  signNote,
  verifierKeyString,
  type Checkpoint,
} from './checkpoint.ts';
import { EMPTY_ROOT } from './merkle.ts';

/**
 * The checkpoint file: a C2SP checkpoint (c2sp.org/tlog-checkpoint) in a C2SP
 * signed note (c2sp.org/signed-note) with an Ed25519 signature. The note
 * layer is checked against the Go reference implementation's own example
 * (golang.org/x/mod/sumdb/note: the PeterNeumann key, its verifier key
 * string, and the signed note it produces — Ed25519 is deterministic, so the
 * bytes must match exactly).
 */

// golang.org/x/mod/sumdb/note, note.go's example and note_test.go.
const GO_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

/** An Ed25519 private key from its 32-byte seed (PKCS #8 DER: a fixed 16-byte prefix, then the seed). */
const keyFromSeed = (seed: Buffer) => createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
const goKey = keyFromSeed(Buffer.from(GO_SKEY.split('+').slice(4).join('+'), 'base64').subarray(1));

const sample = (over: Partial<Checkpoint> = {}): Omit<Checkpoint, 'key'> => ({
  origin: 'pedigree.local/test/store',
  treeSize: 42,
  rootHash: Buffer.alloc(32, 7),
  timestamp: new Date('2026-11-30T12:00:00.000Z'),
  lastPosition: 57,
  ...over,
});

describe('signed notes (c2sp.org/signed-note)', () => {
  it('reproduce the Go reference implementation byte for byte: key ID, verifier key, signature', () => {
    const pub = createPublicKey(goKey);
    expect(noteKeyId('PeterNeumann', pub).toString('hex')).toBe('c74f20a3');
    expect(verifierKeyString('PeterNeumann', pub)).toBe(GO_VKEY);
    expect(signNote(GO_TEXT, 'PeterNeumann', goKey)).toBe(GO_NOTE);
    expect(openNote(GO_NOTE, pub)).toEqual({ text: GO_TEXT, signer: { name: 'PeterNeumann', keyId: 'c74f20a3' } });
  });

  it('refuse an altered text, a note by another key, and a note with no signature', () => {
    const pub = createPublicKey(goKey);
    expect(() => openNote(GO_NOTE.replace('cryptography', 'cryptographY'), pub)).toThrow(/does not verify/);
    const other = generateKeyPairSync('ed25519');
    expect(() => openNote(GO_NOTE, other.publicKey)).toThrow(/not signed by the trusted key.*PeterNeumann \(key ID c74f20a3\), another key/);
    expect(() => openNote(GO_TEXT, pub)).toThrow(CheckpointError);
    // A signature line by an unknown key beside ours is ignored, as signed-note requires.
    const cosigned = `${GO_NOTE}\u2014 witness.example AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n`;
    expect(openNote(cosigned, pub).text).toBe(GO_TEXT);
    expect(parseSignedNote(cosigned).signatures.map((s) => s.name)).toEqual(['PeterNeumann', 'witness.example']);
  });
});

describe('checkpoints (c2sp.org/tlog-checkpoint)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');

  it('write origin, size and base64 root, then Pedigree’s extension lines', () => {
    const note = signCheckpoint(sample(), privateKey);
    const lines = note.split('\n');
    expect(lines.slice(0, 5)).toEqual([
      'pedigree.local/test/store',
      '42',
      Buffer.alloc(32, 7).toString('base64'),
      'timestamp 2026-11-30T12:00:00.000Z',
      'last-position 57',
    ]);
    expect(lines[5]).toBe(`key ${verifierKeyString('pedigree.local/test/store', publicKey)}`);
    expect(lines[6]).toBe('');
    expect(lines[7]).toMatch(/^\u2014 pedigree\.local\/test\/store [A-Za-z0-9+/]{91}=$/);
    const opened = openCheckpoint(note, publicKey);
    expect(opened.checkpoint).toEqual({ ...sample(), key: verifierKeyString('pedigree.local/test/store', publicKey) });
    // The private key is as good as the public one for checking (the CLI may hold either).
    expect(openCheckpoint(note, privateKey).checkpoint.treeSize).toBe(42);
  });

  it('round-trip an empty tree (no last position) and unknown extension lines', () => {
    const empty = sample({ treeSize: 0, rootHash: EMPTY_ROOT, lastPosition: null, otherExtensions: ['witnessed-by example.org'] });
    const parsed = parseCheckpointText(checkpointText(empty));
    expect(parsed).toEqual(empty);
  });

  it('refuse malformed text: sizes with leading zeros, bad base64, an origin with a space, missing lines', () => {
    const good = checkpointText(sample());
    const bad = [
      good.replace('\n42\n', '\n042\n'),
      good.replace('\n42\n', '\n-1\n'),
      good.replace(Buffer.alloc(32, 7).toString('base64'), 'not base64'),
      good.replace('timestamp 2026-11-30T12:00:00.000Z\n', ''),
      good.replace('last-position 57\n', ''),
      good.replace('last-position 57', 'last-position 5.7'),
      good.replace('\n', '\n\n'),
      good.slice(0, -1),
      'pedigree.local/x\n',
    ];
    for (const text of bad) expect(() => parseCheckpointText(text), JSON.stringify(text)).toThrow(CheckpointError);
    expect(() => checkpointText({ ...sample(), origin: 'has space' })).toThrow(/origin/);
    expect(() => checkpointText({ ...sample(), origin: 'has+plus' })).toThrow(/origin/);
  });

  it('refuse a checkpoint whose numbers were edited after signing, or that another key signed', () => {
    const note = signCheckpoint(sample(), privateKey);
    expect(() => openCheckpoint(note.replace('\n42\n', '\n43\n'), publicKey)).toThrow(/does not verify/);
    expect(() => openCheckpoint(note.replace('last-position 57', 'last-position 58'), publicKey)).toThrow(/does not verify/);
    const mallory = generateKeyPairSync('ed25519');
    const forged = signCheckpoint(sample({ treeSize: 40 }), mallory.privateKey);
    expect(() => openCheckpoint(forged, publicKey)).toThrow(/not signed by the trusted key/);
    // …even when the forger copies our verifier key into the text: the key line is informational.
    const withOurKeyLine = signNote(checkpointText({ ...sample({ treeSize: 40 }), key: verifierKeyString(sample().origin, publicKey) }), sample().origin, mallory.privateKey);
    expect(() => openCheckpoint(withOurKeyLine, publicKey)).toThrow(/not signed by the trusted key/);
  });
});
