/**
 * docs/ledger-verification.md stays true: every value of its worked example
 * is the one Pedigree's code computes (test/support/verification-example.ts),
 * and the Python verifier it publishes — run from the page's own text, on
 * the events exported by the page's own SQL — agrees with Pedigree on the
 * example and on real stores of both kinds, untouched and tampered. The
 * Python half needs python3 with the `cryptography` package; where it is
 * missing it is skipped with the reason printed (never under CI).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, logTreeHead, signCheckpoint } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';
import { behindTheStoresBack, burnPositions, deleteLastEvent, insertForgedEvent, rewriteAndRehash } from './support/tamper.ts';
import { workedExample } from './support/verification-example.ts';

const doc = readFileSync(path.resolve(import.meta.dirname, '../docs/ledger-verification.md'), 'utf8');
/** The body of the page's first fenced block in `language`. */
const fenced = (language: string) => {
  const match = new RegExp('```' + language + '\\n([\\s\\S]*?)\\n```').exec(doc);
  if (!match) throw new Error(`no \`\`\`${language} block in docs/ledger-verification.md`);
  return `${match[1]}\n`;
};

/** The first python3 with the `cryptography` package: the one on PATH, else Debian's (python3-cryptography, which `npm test` installs). */
const python = (() => {
  const reasons: string[] = [];
  for (const bin of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(bin, ['-c', 'import cryptography'], { encoding: 'utf8' });
    if (probe.error) reasons.push(`${bin}: ${probe.error.message}`);
    else if (probe.status !== 0) reasons.push(`${bin} has no cryptography package (${probe.stderr.trim().split('\n').at(-1)})`);
    else return { bin, skip: null };
  }
  return { bin: 'python3', skip: reasons.join('; ') };
})();
if (python.skip && process.env.CI) throw new Error(`CI must run the Python verifier of docs/ledger-verification.md, but ${python.skip}`);
if (python.skip) console.warn(`[skipping the Python verifier of docs/ledger-verification.md] ${python.skip}`);

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pedigree-doc-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const script = path.join(tmp, 'verify_pedigree.py');
writeFileSync(script, fenced('python'));

function runVerifier(events: string, checkpoint?: string, publicKeyPem?: string): { code: number; out: string } {
  const eventsFile = path.join(tmp, `${randomUUID()}.jsonl`);
  writeFileSync(eventsFile, events);
  const args = [script, eventsFile];
  if (checkpoint !== undefined) {
    const cp = path.join(tmp, `${randomUUID()}.checkpoint`);
    const key = path.join(tmp, `${randomUUID()}.pem`);
    writeFileSync(cp, checkpoint);
    writeFileSync(key, publicKeyPem!);
    args.push(cp, key);
  }
  const r = spawnSync(python.bin, args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

describe('docs/ledger-verification.md', () => {
  let ex: Awaited<ReturnType<typeof workedExample>>;
  beforeAll(async () => {
    ex = await workedExample();
  });

  it('shows the worked example as Pedigree computes it', () => {
    expect(doc).toContain(`\`\`\`json\n${ex.canonical[0]}\n\`\`\``);
    expect(doc).toContain(`\`\`\`json\n${ex.canonical[2]}\n\`\`\``);
    for (const e of ex.events) expect(doc).toContain(`| ${e.position} |`);
    for (const e of ex.events) expect(doc).toContain(`\`${e.hash}\``);
    expect(doc).toContain(`\`${ex.events[2]!.prevHash.slice(0, 8)}…${ex.events[2]!.prevHash.slice(-5)}\``);
    ex.leaves.forEach((leaf, i) => expect(doc).toContain(`\`${leaf}\` (${i})`));
    expect(ex.roots[1]).toBe(ex.leaves[0]);
    expect(doc).toContain(`\`${ex.roots[2]}\`\n(= node(leaf 0, leaf 1))`);
    expect(doc).toContain(`\`${ex.roots[3]}\`\n(= node(MTH of 2, leaf 2))`);
    expect(doc).toContain(`\`\`\`\n${ex.checkpoint}\`\`\``);
    expect(doc).toContain(`\`\`\`\n${ex.publicKeyPem}\`\`\``);
    expect(doc).toContain(`(raw: \`${ex.publicKeyRaw}\`)`);
    expect(ex.checkpoint).toContain(`key ${ex.verifierKey}\n`);
    expect(ex.consistency2to3).toEqual([ex.leaves[2]]);
    expect(doc).toContain(`hash \`${ex.consistency2to3[0]}\`: 2 is\na power of two`);
    expect(doc).toContain(`is \`${ex.inclusion0in3[0]}\`,\n\`${ex.inclusion0in3[1]}\`.`);
  });

  it.skipIf(python.skip)('its Python verifier accepts the example, and refuses it altered', () => {
    const lines = ex.events.map((e) =>
      JSON.stringify({
        position: e.position,
        stream_id: e.streamId,
        stream_version: e.streamVersion,
        event_id: e.eventId,
        project_id: e.projectId,
        type: e.type,
        schema_version: e.schemaVersion,
        data: e.data,
        metadata: e.metadata,
        recorded_at: e.recordedAt.toISOString(),
        prev_hash: e.prevHash,
        hash: e.hash,
      }),
    );
    const events = `${lines.join('\n')}\n`;
    const ok = runVerifier(events, ex.checkpoint, ex.publicKeyPem);
    expect(ok).toEqual({ code: 0, out: `chains OK: 3 events\ncheckpoint OK: signed 2026-11-30T12:00:05.000Z, 2 events; the log has 3; root ${ex.roots[3]}\n` });
    expect(runVerifier(events.replace('"démo"', '"demo"')).out).toBe('BROKEN chain: position 1: content does not match its hash\n');
    const otherKey = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(runVerifier(events, ex.checkpoint, otherKey)).toMatchObject({ code: 1, out: expect.stringContaining('not signed by this key') });
    expect(runVerifier(events, ex.checkpoint.replace('\n2\n', '\n3\n'), ex.publicKeyPem)).toMatchObject({ code: 1, out: expect.stringContaining('InvalidSignature') });
    expect(runVerifier(`${lines[0]}\n`, ex.checkpoint, ex.publicKeyPem)).toEqual({ code: 1, out: 'chains OK: 1 events\nTAMPERED: the log holds 1 events, the checkpoint vouches for 2\n' });
  });

  it.skipIf(python.skip)('its JCS agrees with canonicalJson on RFC 8785’s numbers and on random JSON', () => {
    const values = fc.sample(fc.jsonValue({ maxDepth: 4, stringUnit: 'grapheme' }), { numRuns: 400, seed: 8785 });
    const numbers = fc.sample(fc.double({ noNaN: true, noDefaultInfinity: true }), { numRuns: 2000, seed: 9162 });
    const appendixB = ['0000000000000001', '7fefffffffffffff', '4340000000000000', '4430000000000000', '44b52d02c7e14af5', '44b52d02c7e14af6', '44b52d02c7e14af7', '444b1ae4d6e2ef4e', '444b1ae4d6e2ef50', '3eb0c6f7a0b5ed8c', '3eb0c6f7a0b5ed8d', '41b3de4355555553', '41b3de4355555557', 'becbf647612f3696', '43143ff3c1cb0959'].map((bits) => Buffer.from(bits, 'hex').readDoubleBE(0));
    const all = [...values, ...numbers, ...appendixB, { '\ud83d\ude00': 1, '\ufb33': 2, '\u20ac': 3 }];
    const out = execFileSync(
      python.bin,
      ['-c', `import importlib.util, json, sys\nspec = importlib.util.spec_from_file_location('v', ${JSON.stringify(script)})\nv = importlib.util.module_from_spec(spec); spec.loader.exec_module(v)\nfor line in sys.stdin: print(v.jcs(json.loads(line)))`],
      { input: all.map((v) => JSON.stringify(v)).join('\n'), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    );
    const got = out.split('\n').slice(0, -1);
    const wrong = all.map((v, i) => ({ v, js: canonicalJson(v), py: got[i] })).filter((r) => r.js !== r.py);
    expect(wrong).toEqual([]);
  });
});

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip || python.skip)(`the page's export and Python verifier on ${backend.name}`, () => {
    let pd: Pedigree;
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    let checkpoint: string;
    const exportEvents = async () => (await pd.database.db.query<Record<string, string>>(fenced('sql'))).map((r) => Object.values(r)[0]).join('\n') + '\n';

    beforeAll(async () => {
      pd = await backend.open();
      const { projectId } = await pd.tracker.createProject({ name: 'doc' });
      for (const name of ['pretrain', 'sft']) {
        const { runId } = await pd.tracker.createRun({ projectId, name, kind: name === 'sft' ? 'sft' : 'pretrain', hyperparameters: { lr: 3e-4, 'rope base': 1e21, note: 'line\nbreak "quoted" \u00e9\u20ac\ud83d\ude00' } });
        await pd.tracker.logMetrics(runId, Array.from({ length: 50 }, (_, step) => ({ key: 'train/loss', step, value: 1 / (step + 3), time: 1_700_000_000_000 + step })));
        await burnPositions(pd.database.db, 1);
        await pd.tracker.addTag(runId, 'kept');
      }
      const head = await logTreeHead(pd.database.db);
      checkpoint = signCheckpoint({ origin: 'pedigree.local/doc-test', ...head, timestamp: new Date() }, privateKey);
    });
    afterAll(() => backend.dispose());

    it('verifies the untouched store, then a grown one', async () => {
      const before = runVerifier(await exportEvents(), checkpoint, publicPem);
      expect(before.code, before.out).toBe(0);
      expect(before.out).toMatch(/^chains OK: \d+ events\ncheckpoint OK: /);
      const { projectId } = await pd.tracker.createProject({ name: 'later' });
      expect(projectId).toBeTruthy();
      const after = runVerifier(await exportEvents(), checkpoint, publicPem);
      expect(after.code, after.out).toBe(0);
    });

    it('catches a re-hashed stream, a forged insert and a truncated tail, as `verify --checkpoint` does', async () => {
      const [row] = await pd.database.db.query<{ position: number; data: { values: Record<string, unknown> } }>(`SELECT position, data FROM events WHERE type = 'HyperparametersDeclared' ORDER BY position LIMIT 1`);
      await rewriteAndRehash(pd, row!.position, { values: { ...row!.data.values, lr: 1 } });
      let r = runVerifier(await exportEvents(), checkpoint, publicPem);
      expect(r.out).toMatch(/^chains OK: \d+ events\nTAMPERED: the first \d+ events do not hash to the checkpoint root\n$/);

      await rewriteAndRehash(pd, row!.position, row!.data); // put it back: the page's algorithm restores the exact hashes
      expect(runVerifier(await exportEvents(), checkpoint, publicPem).code).toBe(0);

      const [gap] = await pd.database.db.query<{ p: number }>('SELECT s.p FROM generate_series(1, (SELECT max(position) FROM events)) AS s(p) WHERE NOT EXISTS (SELECT 1 FROM events WHERE position = s.p) LIMIT 1');
      await insertForgedEvent(pd, gap!.p);
      r = runVerifier(await exportEvents(), checkpoint, publicPem);
      expect(r.out).toMatch(/TAMPERED: the first \d+ events do not hash to the checkpoint root\n$/);
      await behindTheStoresBack(pd.database.db, async (tx) => {
        await tx.query('DELETE FROM events WHERE position = $1', [gap!.p]);
      });
      expect(runVerifier(await exportEvents(), checkpoint, publicPem).code).toBe(0);

      for (let i = 0; i < 3; i++) await deleteLastEvent(pd);
      r = runVerifier(await exportEvents(), checkpoint, publicPem);
      expect(r.out).toMatch(/TAMPERED: the log holds \d+ events, the checkpoint vouches for \d+\n$/);
    });
  });
}
