/**
 * Bad input over the wire, as raw HTTP (what a non-TypeScript caller sends,
 * in tRPC's wire format: `POST /api/trpc/<path>` with `{"json": input}`).
 * How we tried to break it: malformed JSON, wrong types, missing fields,
 * a batch one point over the limit, a packed (columnar) batch whose
 * columns do not match its size or are not base64, points and columns at once, a body over the size limit, a made-up
 * procedure, GET on a mutation, a reused event id with other content, writes
 * to a finished run, data-mix weights that do not sum to 1, names too long.
 * Each gets the documented 4xx and a message naming the problem, and the
 * store is unchanged (same last position, same points).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_REQUEST_BYTES } from '@pedigree/api';
import { packPoints } from '@pedigree/ledger/packed';
import { connect, type Pedigree as Client } from '@pedigree/client';
import { pedigreeServer, type PedigreeServer } from './support/server.ts';

describe('bad input over raw HTTP, to the real server', () => {
  let home: string;
  let server: PedigreeServer;
  let pd: Client;
  let runId: string;
  let doneRunId: string;

  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-wire-'));
    server = await pedigreeServer({ home, auth: 'open' });
    await server.start();
    pd = await connect({ url: server.url, handleSignals: false, retry: { retryForMs: 0 } });
    runId = (await pd.startRun({ project: 'wire', name: 'live', kind: 'pretrain' })).id;
    const done = await pd.startRun({ project: 'wire', name: 'done', kind: 'pretrain' });
    await done.finish();
    doneRunId = done.id;
  });
  afterAll(async () => {
    await pd?.close();
    if (server?.pid) await server.stop();
    rmSync(home, { recursive: true, force: true });
  });

  /** The store's last event position, as the server reports it: unchanged means nothing was written. */
  const position = async () => (await pd.api.system.health.query()).position;
  const pointsOf = async (key: string) => pd.metrics(runId, key, { limit: 100_000 });

  const post = (path: string, body: string | object, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/api/trpc/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  /** Sends, expects the status and a message matching, and checks nothing was written. */
  async function refused(res: Promise<Response>, status: number, message: RegExp) {
    const before = await position();
    const r = await res;
    const text = await r.text();
    expect(r.status, text).toBe(status);
    const body = JSON.parse(text) as { error: { json: { message: string; data: { httpStatus: number } } } };
    expect(body.error.json.message).toMatch(message);
    expect(body.error.json.data.httpStatus).toBe(status);
    expect(await position()).toBe(before);
    return body.error.json;
  }

  it('accepts a well-formed batch (the baseline the refusals below differ from)', async () => {
    const r = await post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: 0, value: 1.5 }] } });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ result: { data: { json: { points: 1, duplicate: false } } } });
  });

  it('malformed JSON: 400 PARSE_ERROR', async () => {
    await refused(post('runs.logMetrics', '{"json": {"runId": '), 400, /JSON|parse/i);
  });

  it('wrong types: 400 naming the field', async () => {
    const err = await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: 'one', value: 'high' }] } }), 400, /points\.0\.step.*points\.0\.value|points\.0\.value.*points\.0\.step/s);
    expect(JSON.stringify(err.data)).toContain('zodError');
    await refused(post('runs.logMetrics', { json: 42 }), 400, /invalid input/);
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: 1.5, value: 1 }] } }), 400, /step/);
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: -1, value: 1 }] } }), 400, /step/);
  });

  it('missing fields: 400 naming them', async () => {
    await refused(post('runs.logMetrics', { json: { points: [{ key: 'loss', step: 0, value: 1 }] } }), 400, /runId/);
    await refused(post('runs.create', { json: { project: 'wire', kind: 'sft' } }), 400, /name/);
    await refused(post('runs.recordEval', { json: { runId, suite: 'x' } }), 400, /task.*score|score.*task/s);
  });

  it('a batch over 50,000 points: 400, nothing written', async () => {
    const points = Array.from({ length: 50_001 }, (_, i) => ({ key: 'loss', step: i, value: 1 }));
    await refused(post('runs.logMetrics', { json: { runId, points } }), 400, /at most 50000 points per call/);
    const atLimit = Array.from({ length: 50_000 }, (_, i) => ({ key: 'big', step: i, value: i }));
    expect((await post('runs.logMetrics', { json: { runId, points: atLimit } })).status).toBe(200);
    expect(await pointsOf('big')).toHaveLength(50_000);
  });

  it(`a body over ${MAX_REQUEST_BYTES} bytes: 413 before it is parsed`, async () => {
    const huge = JSON.stringify({ json: { runId, points: [{ key: 'x'.repeat(MAX_REQUEST_BYTES), step: 0, value: 1 }] } });
    await refused(post('runs.logMetrics', huge), 413, /request body over/);
  });

  it('names and keys over their limits: 400', async () => {
    await refused(post('runs.create', { json: { project: 'wire', name: 'n'.repeat(201), kind: 'sft' } }), 400, /name/);
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'k'.repeat(251), step: 0, value: 1 }] } }), 400, /key/);
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'bad\nkey', step: 0, value: 1 }] } }), 400, /letters, digits/);
  });

  it('unknown procedure: 404; GET on a mutation: 405; a mutation path as a query: refused', async () => {
    await refused(post('runs.nope', { json: {} }), 404, /No procedure found/i);
    const r = await fetch(`${server.url}/api/trpc/runs.logMetrics?input=${encodeURIComponent(JSON.stringify({ json: { runId, points: [] } }))}`);
    expect(r.status).toBe(405);
  });

  it('a reused event id with different content: 409, the first write stands', async () => {
    const eventId = '6f1d4a52-8d0e-4f4b-9a57-0c4f0d2d1e11';
    expect((await post('runs.logMetrics', { json: { runId, eventId, points: [{ key: 'acc', step: 0, value: 0.5 }] } })).status).toBe(200);
    const again = await post('runs.logMetrics', { json: { runId, eventId, points: [{ key: 'acc', step: 0, value: 0.5 }] } });
    expect(await again.json()).toMatchObject({ result: { data: { json: { duplicate: true } } } });
    await refused(post('runs.logMetrics', { json: { runId, eventId, points: [{ key: 'acc', step: 0, value: 0.9 }] } }), 409, /event id|eventId|different/i);
    expect((await pointsOf('acc')).map((p) => p.value)).toEqual([0.5]);
  });

  it('packed columns (what the typed client sends): accepted; a packing that lies is 400 naming the column; points and columns together refused', async () => {
    const columns = packPoints([
      { key: 'packed', step: 0, value: 1.25, time: 1 },
      { key: 'packed', step: 1, value: 2.5, time: 2 },
    ]);
    expect((await post('runs.logMetrics', { json: { runId, columns } })).status).toBe(200);
    expect((await pointsOf('packed')).map((p) => [p.step, p.value])).toEqual([[0, 1.25], [1, 2.5]]);
    await refused(post('runs.logMetrics', { json: { runId, columns: { ...columns, n: 3 } } }), 400, /columns\.steps: must hold n × 8 = 24 bytes, got 16/);
    await refused(post('runs.logMetrics', { json: { runId, columns: { ...columns, values: 'not base64!' } } }), 400, /columns\.values: must be base64/);
    await refused(post('runs.logMetrics', { json: { runId, columns: { ...columns, format: 'msgpack' } } }), 400, /format/);
    await refused(post('runs.logMetrics', { json: { runId, columns, points: [{ key: 'packed', step: 5, value: 1 }] } }), 400, /points or columns/);
    await refused(post('runs.logMetrics', { json: { runId } }), 400, /points or columns/);
    // Packed values are numbers with their bits: NaN needs the same opt-in, and the ledger names the point.
    await refused(post('runs.logMetrics', { json: { runId, columns: packPoints([{ key: 'packed', step: 9, value: NaN, time: 3 }]) } }), 400, /points\.0\.value.*finite|finite/);
    await refused(post('runs.logMetrics', { json: { runId, columns: packPoints([{ key: 'packed', step: 0.5, value: 1, time: 3 }]) } }), 400, /points\.0\.step/);
    expect(await pointsOf('packed')).toHaveLength(2);
  });

  it('domain rules: writes to a finished run, unknown run, bad data-mix weights, non-finite values: 4xx from the ledger', async () => {
    const err = await refused(post('runs.logMetrics', { json: { runId: doneRunId, points: [{ key: 'loss', step: 0, value: 1 }] } }), 400, /it is completed/);
    expect(err.data).toMatchObject({ code: 'BAD_REQUEST', ledgerCode: 'INVALID' });
    await refused(post('runs.complete', { json: { runId: '00000000-0000-4000-8000-000000000000' } }), 404, /not found/);
    const { artifactId } = await pd.registerArtifact({ project: 'wire', name: 'ds', spec: { kind: 'dataset', source: 'synthetic' } });
    await refused(
      post('artifacts.register', { json: { project: 'wire', name: 'mix', spec: { kind: 'datamix', components: [{ artifactId, weight: 0.7 }] } } }),
      400,
      /weights must sum to 1/,
    );
    // superjson's way of sending NaN: refused unless the caller opts in.
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: 9, value: 'NaN' }] }, meta: { values: { 'points.0.value': ['number'] } } }), 400, /finite/);
    // The API checks only the batch's size; the ledger checks each point: NaN spelled as a string needs the
    // same opt-in, anything else that is not a number is refused by field, and nothing is stored.
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: 9, value: 'Infinity' }] } }), 400, /finite/);
    await refused(post('runs.logMetrics', { json: { runId, points: [{ key: 'loss', step: 9, value: 1 }, { key: 'loss', step: 10, value: 'high' }] } }), 400, /points\.1\.value/);
    await refused(post('runs.logMetrics', { json: { runId, points: [null] } }), 400, /points\[0\] must be an object/);
    expect((await pointsOf('loss')).filter((p) => p.step >= 9)).toEqual([]);
  });
});
