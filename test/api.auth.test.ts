/**
 * Auth, table-driven over every procedure of the router: a key of project A
 * can neither read nor write project B. How we tried to break it: B's run,
 * artifact, checkpoint, stream and project named by id, by name and by run-id
 * prefix, with A's key; no key and a revoked key on a server that needs keys;
 * a key creating projects. Each refused write leaves the event log as it was,
 * and the same call aimed at A succeeds (so the refusal is the key's doing,
 * not a malformed input). A procedure added to the router without a row here
 * fails the test.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appRouter, createApiKey, revokeApiKey } from '@pedigree/api';
import { connect, type Pedigree as Client } from '@pedigree/client';
import type { Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { backends } from './support/stores.ts';

interface World {
  project: string;
  projectName: string;
  run: string;
  artifact: string;
  checkpoint: string;
}

type Api = Client['api'];
/** One row per procedure: the call, aimed at a world (B: must be refused; A: must succeed). `fresh`: needs a run of its own (it changes the run's status). */
type Row = { call: (api: Api, w: World) => Promise<unknown>; fresh?: boolean };

const digest = () => `sha256:${randomUUID().replace(/-/g, '').padEnd(64, '0')}`;

const ROWS: Record<string, Row> = {
  'projects.list': { call: (api) => api.projects.list.query() },
  'projects.get': { call: (api, w) => api.projects.get.query({ project: w.projectName }) },
  'projects.create': { call: (api) => api.projects.create.mutate({ name: `p-${randomUUID()}` }) },
  'projects.ensure': { call: (api, w) => api.projects.ensure.mutate({ name: w.projectName }) },
  'artifacts.register': { call: (api, w) => api.artifacts.register.mutate({ project: w.project, name: `ds-${randomUUID()}`, spec: { kind: 'dataset', source: 'synthetic' } }) },
  'artifacts.get': { call: (api, w) => api.artifacts.get.query({ artifactId: w.artifact }) },
  'artifacts.list': { call: (api, w) => api.artifacts.list.query({ project: w.project }) },
  'runs.create': { call: (api, w) => api.runs.create.mutate({ project: w.project, name: 'new', kind: 'sft', inputs: [{ artifactId: w.artifact, role: 'train-mix' }] }) },
  'runs.fork': { call: (api, w) => api.runs.fork.mutate({ fromRunId: w.run, name: 'fork', checkpointId: w.checkpoint }) },
  'runs.start': { call: (api, w) => api.runs.start.mutate({ runId: w.run }), fresh: true },
  'runs.declareHyperparameters': { call: (api, w) => api.runs.declareHyperparameters.mutate({ runId: w.run, values: { lr: 1 } }) },
  'runs.changeHyperparameter': { call: (api, w) => api.runs.changeHyperparameter.mutate({ runId: w.run, key: 'lr', value: 0.5, step: 1 }) },
  'runs.useInput': { call: (api, w) => api.runs.useInput.mutate({ runId: w.run, artifactId: w.artifact, role: 'eval-set' }) },
  'runs.produceOutput': { call: (api, w) => api.runs.produceOutput.mutate({ runId: w.run, artifactId: w.artifact, role: 'report' }), fresh: true },
  'runs.logMetrics': { call: (api, w) => api.runs.logMetrics.mutate({ runId: w.run, points: [{ key: 'loss', step: 1, value: 1 }] }) },
  'runs.saveCheckpoint': { call: (api, w) => api.runs.saveCheckpoint.mutate({ runId: w.run, step: 2, digest: digest() }) },
  'runs.recordEval': { call: (api, w) => api.runs.recordEval.mutate({ runId: w.run, suite: 's', task: 't', score: 1 }) },
  'runs.complete': { call: (api, w) => api.runs.complete.mutate({ runId: w.run }), fresh: true },
  'runs.fail': { call: (api, w) => api.runs.fail.mutate({ runId: w.run, error: 'boom' }), fresh: true },
  'runs.tag': { call: (api, w) => api.runs.tag.mutate({ runId: w.run, tag: 'x' }) },
  'runs.note': { call: (api, w) => api.runs.note.mutate({ runId: w.run, text: 'hi' }) },
  'runs.get': { call: (api, w) => api.runs.get.query({ runId: w.run }) },
  'runs.list': { call: (api, w) => api.runs.list.query({ project: w.projectName }) },
  'runs.hyperparameters': { call: (api, w) => api.runs.hyperparameters.query({ runId: w.run }) },
  'runs.lineage': { call: (api, w) => api.runs.lineage.query({ runId: w.run }) },
  'runs.edges': { call: (api, w) => api.runs.edges.query({ runId: w.run }) },
  'runs.evals': { call: (api, w) => api.runs.evals.query({ runId: w.run }) },
  'runs.notes': { call: (api, w) => api.runs.notes.query({ runId: w.run.slice(0, 13) }) },
  'runs.watch': {
    call: (api, w) =>
      new Promise((resolve, reject) => {
        const sub = api.runs.watch.subscribe(
          { runId: w.run },
          {
            onData: (d) => {
              sub.unsubscribe();
              resolve(d);
            },
            onError: (err) => {
              sub.unsubscribe();
              reject(err);
            },
          },
        );
      }),
  },
  'metrics.keys': { call: (api, w) => api.metrics.keys.query({ runId: w.run }) },
  'metrics.points': { call: (api, w) => api.metrics.points.query({ runId: w.run, key: 'loss' }) },
  'metrics.buckets': { call: (api, w) => api.metrics.buckets.query({ runId: w.run, key: 'loss', buckets: 10 }) },
  'metrics.chart': { call: (api, w) => api.metrics.chart.query({ runId: w.run, key: 'loss', buckets: 10 }) },
  'lineage.diff': { call: (api, w) => api.lineage.diff.query({ a: w.run, b: w.run }) },
  'lineage.openLineage': { call: (api, w) => api.lineage.openLineage.query({ project: w.projectName }) },
  'events.stream': { call: (api, w) => api.events.stream.query({ streamId: `run-${w.run}` }) },
  'system.whoami': { call: (api) => api.system.whoami.query() },
  'system.ticket': { call: (api) => api.system.ticket.mutate() },
};
/** Procedures that name no project's data: checked separately below. */
const PROJECTLESS = new Set(['projects.list', 'projects.create', 'projects.ensure', 'system.whoami', 'system.ticket']);
const PUBLIC = new Set(['system.health']);

async function world(pd: Pedigree, name: string): Promise<World> {
  const { projectId } = await pd.tracker.createProject({ name });
  const { artifactId } = await pd.tracker.registerArtifact({ projectId, name: `${name}-data`, spec: { kind: 'dataset', source: 'synthetic', params: { seed: 1 } } });
  const { runId } = await pd.tracker.createRun({ projectId, name: `${name}-run`, kind: 'pretrain', inputs: [{ artifactId, role: 'train-mix' }], start: true });
  await pd.tracker.logMetrics(runId, [{ key: 'loss', step: 0, value: 2 }]);
  const { artifactId: checkpoint } = await pd.tracker.saveCheckpoint(runId, { step: 1, digest: digest() });
  return { project: projectId, projectName: name, run: runId, artifact: artifactId, checkpoint };
}

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`API auth on ${backend.name}`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    let a: World;
    let b: World;
    let keyA: string;
    let clientA: Client;

    beforeAll(async () => {
      pd = await backend.open();
      a = await world(pd, 'project-a');
      b = await world(pd, 'project-b');
      keyA = (await createApiKey(pd.database.db, a.project, 'a')).key;
      server = await serveInProcess(pd, 'keys');
      clientA = await connect({ url: server.url, apiKey: keyA, retry: { retryForMs: 0 }, handleSignals: false });
    });
    afterAll(async () => {
      await clientA?.close();
      await server?.close();
      await backend.dispose();
    });

    it('has a row for every procedure of the router', () => {
      const procedures = Object.keys(appRouter._def.procedures).filter((p) => !PUBLIC.has(p)).sort();
      expect(Object.keys(ROWS).sort()).toEqual(procedures);
    });

    for (const [path, row] of Object.entries(ROWS)) {
      if (PROJECTLESS.has(path)) continue;
      it(`${path}: refuses project B's data to A's key, changes nothing, and serves A's`, async () => {
        const before = await pd.store.lastPosition();
        const err = await row.call(clientA.api, b).then(
          () => null,
          (e: unknown) => e as { data?: { code?: string; httpStatus?: number }; message: string },
        );
        expect(err, `${path} on B with A's key should be refused`).not.toBeNull();
        expect(err!.data?.code, err!.message).toBe('FORBIDDEN');
        expect(await pd.store.lastPosition()).toBe(before);

        const target = row.fresh ? { ...a, run: (await pd.tracker.createRun({ projectId: a.project, name: `fresh-${path}`, kind: 'custom', start: path !== 'runs.start' })).runId } : a;
        await expect(row.call(clientA.api, target)).resolves.toBeDefined();
      });
    }

    it('shows a key only its own project, and lets it neither create projects nor ensure another', async () => {
      expect((await clientA.api.projects.list.query()).map((p) => p.name)).toEqual(['project-a']);
      const before = await pd.store.lastPosition();
      await expect(clientA.api.projects.create.mutate({ name: 'project-c' })).rejects.toMatchObject({ data: { code: 'FORBIDDEN' } });
      await expect(clientA.api.projects.ensure.mutate({ name: 'project-b' })).rejects.toMatchObject({ data: { code: 'FORBIDDEN' } });
      await expect(clientA.api.projects.ensure.mutate({ name: 'brand-new' })).rejects.toMatchObject({ data: { code: 'FORBIDDEN' } });
      expect(await pd.store.lastPosition()).toBe(before);
      expect(await clientA.api.system.whoami.query()).toMatchObject({ projectId: a.project });
    });

    it('needs a key on a keys server: none, a made-up one and a revoked one get 401; health stays public', async () => {
      const anonymous = await fetch(`${server.url}/api/trpc/runs.get?input=${encodeURIComponent(JSON.stringify({ json: { runId: a.run } }))}`);
      expect(anonymous.status).toBe(401);
      expect(JSON.stringify(await anonymous.json())).toContain('pedigree keys create');
      const forged = await fetch(`${server.url}/api/trpc/projects.list`, { headers: { authorization: 'Bearer pdg_made-up' } });
      expect(forged.status).toBe(401);

      const spare = await createApiKey(pd.database.db, a.project, 'spare');
      const ok = await fetch(`${server.url}/api/trpc/projects.list`, { headers: { authorization: `Bearer ${spare.key}` } });
      expect(ok.status).toBe(200);
      await revokeApiKey(pd.database.db, spare.id);
      const revoked = await fetch(`${server.url}/api/trpc/projects.list`, { headers: { 'x-api-key': spare.key } });
      expect(revoked.status).toBe(401);
      expect((await fetch(`${server.url}/api/trpc/system.health`)).status).toBe(200);

      await expect(connect({ url: server.url, apiKey: spare.key, retry: { retryForMs: 0 }, handleSignals: false })).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    });

    /**
     * A live-update request as a browser's EventSource makes it (everything in
     * the URL). tRPC answers SSE with 200 and reports a refusal as its first
     * event: 'served' when none comes within a second, else the error's code.
     */
    const sse = async (input: unknown, connectionParams: Record<string, string>): Promise<string> => {
      const res = await fetch(`${server.url}/api/trpc/runs.watch?input=${encodeURIComponent(JSON.stringify({ json: input }))}&connectionParams=${encodeURIComponent(JSON.stringify(connectionParams))}`, {
        headers: { accept: 'text/event-stream' },
      });
      if (res.status !== 200) return `HTTP ${res.status}`;
      const reader = res.body!.getReader();
      let text = '';
      const deadline = Date.now() + 1000;
      try {
        while (Date.now() < deadline && !text.includes('serialized-error')) {
          const next = await Promise.race([reader.read(), new Promise<null>((r) => setTimeout(() => r(null), deadline - Date.now()))]);
          if (!next || next.done) break;
          text += new TextDecoder().decode(next.value);
        }
      } finally {
        await reader.cancel();
      }
      const error = /event: serialized-error\ndata: (.*)\n/.exec(text);
      if (!error) return 'served';
      const { json } = JSON.parse(error[1]!) as { json: { message: string; data: { code: string } } };
      return `${json.data.code}: ${json.message}`;
    };

    it('never takes a key from a URL: live updates open with a short-lived ticket, for subscriptions only', async () => {
      expect(await sse({ runId: a.run }, { apiKey: keyA })).toMatch(/^UNAUTHORIZED: API keys are not accepted in URLs/);
      // A key in the URL is refused even beside a good header.
      const both = await fetch(`${server.url}/api/trpc/projects.list?connectionParams=${encodeURIComponent(JSON.stringify({ apiKey: keyA }))}`, { headers: { authorization: `Bearer ${keyA}` } });
      expect(both.status).toBe(401);

      const { ticket } = await clientA.api.system.ticket.mutate();
      expect(ticket).toMatch(/^pdt_/);
      expect(ticket).not.toContain(keyA.slice(4, 20));
      expect(await sse({ runId: a.run }, { ticket: ticket! })).toBe('served');
      // Another project's run through A's ticket: refused like any of A's requests for B.
      expect(await sse({ runId: b.run }, { ticket: ticket! })).toMatch(/^FORBIDDEN/);
      // Not for queries; not forged; not after its key is revoked.
      const asQuery = await fetch(`${server.url}/api/trpc/projects.list?connectionParams=${encodeURIComponent(JSON.stringify({ ticket }))}`);
      expect(asQuery.status).toBe(401);
      expect(await sse({ runId: a.run }, { ticket: `${ticket!.slice(0, -2)}xx` })).toMatch(/^UNAUTHORIZED: the live-update ticket is invalid/);
      const spare = await createApiKey(pd.database.db, a.project, 'spare-2');
      const spareTicket = await (await connect({ url: server.url, apiKey: spare.key, retry: { retryForMs: 0 }, handleSignals: false })).api.system.ticket.mutate();
      await revokeApiKey(pd.database.db, spare.id);
      expect(await sse({ runId: a.run }, { ticket: spareTicket.ticket! })).toMatch(/^UNAUTHORIZED/);
    });

    it("answers a key about another project's things exactly as about things that do not exist", async () => {
      const answer = async (call: Promise<unknown>) =>
        call.then(
          () => 'served',
          (e: { data?: { code?: string }; message: string }) => `${e.data?.code}: ${e.message}`,
        );
      const missingRun = '00000000-0000-4000-8000-000000000000';
      const foreign = await answer(clientA.api.runs.get.query({ runId: b.run }));
      const missing = await answer(clientA.api.runs.get.query({ runId: missingRun }));
      expect(foreign).toBe(missing.replace(missingRun, b.run));
      expect(foreign).not.toMatch(/project-b|belongs/);
      // A prefix of B's run id: as unknown as any prefix, and never B's full id.
      const prefix = await answer(clientA.api.runs.get.query({ runId: b.run.slice(0, 8) }));
      expect(prefix).toBe(`FORBIDDEN: run "${b.run.slice(0, 8)}" not found in this API key's project`);
      const byName = await answer(clientA.api.projects.get.query({ project: b.projectName }));
      const noSuch = await answer(clientA.api.projects.get.query({ project: 'no-such-project' }));
      expect(byName).toBe(noSuch.replace('no-such-project', b.projectName));
      const stream = await answer(clientA.api.events.stream.query({ streamId: `run-${b.run}` }));
      const noStream = await answer(clientA.api.events.stream.query({ streamId: `run-${missingRun}` }));
      expect(stream).toBe(noStream.replace(missingRun, b.run));
    });
  });
}
