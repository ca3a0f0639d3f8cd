import { connect, PedigreeError, type Pedigree as Client, type RetryPolicy } from '@pedigree/client';
import type { StoreTarget } from '@pedigree/db';
import type { RunView } from '@pedigree/lineage';
import { UsageError } from './args.ts';
import { servingProcess, type ServingNote } from './server.ts';
import { newestFirst, type RunFilter } from './store.ts';

/**
 * The user commands (runs, show, lineage, events, diff, projects, export) read
 * through the Pedigree client, so that they work beside a running server: the
 * server named, else the `pedigree start` that holds the embedded store, else
 * the store itself (the client's embedded mode). The one place that choice is
 * made.
 */
export type ClientTarget =
  /** `serving`: the `pedigree start` found holding the embedded store; null for a server named by --server or $PEDIGREE_SERVER. */
  | { kind: 'server'; url: string; serving: (ServingNote & { dir: string }) | null }
  | { kind: 'embedded'; store: StoreTarget };

const HTTP_URL = /^https?:\/\//;

/**
 * --server, else $PEDIGREE_SERVER unless --home or --url names a store (a
 * flag beats the environment). --server beside --home or --url is a mistake:
 * two stores.
 */
export function serverFrom(flags: { server?: string; home?: string; url?: string }, fromEnv: string | undefined): string | undefined {
  if (flags.server !== undefined) {
    const other = flags.home !== undefined ? '--home' : flags.url !== undefined ? '--url' : null;
    if (other) throw new UsageError(`--server and ${other} name two different stores; give one`);
    if (!HTTP_URL.test(flags.server)) throw new UsageError(`--server must start with http:// or https://, got ${JSON.stringify(flags.server)}`);
    return flags.server.replace(/\/+$/, '');
  }
  if (!fromEnv || flags.home !== undefined || flags.url !== undefined) return undefined;
  if (!HTTP_URL.test(fromEnv)) throw new UsageError(`PEDIGREE_SERVER must start with http:// or https://, got ${JSON.stringify(fromEnv)}`);
  return fromEnv.replace(/\/+$/, '');
}

export function clientTarget(target: StoreTarget, server: string | undefined): ClientTarget {
  if (server !== undefined) return { kind: 'server', url: server, serving: null };
  if ('dir' in target) {
    const serving = servingProcess(target.dir);
    if (serving) return { kind: 'server', url: serving.url, serving: { ...serving, dir: target.dir } };
  }
  return { kind: 'embedded', store: target };
}

/** A command line fails fast when the server is gone; a trainer rides out a restart (the client's default). */
const READ_RETRY: Partial<RetryPolicy> = { retryForMs: 2_000 };

/**
 * Connects to `where`, with what went wrong in words a person can act on. A
 * `pedigree start` that stopped between the look at its note and the
 * connection leaves the store free: then the store itself.
 */
export async function connectClient(where: ClientTarget, opts: { apiKey?: string; recording?: boolean }): Promise<Client> {
  const retry = opts.recording ? undefined : READ_RETRY;
  if (where.kind === 'embedded') return connect({ embedded: 'dir' in where.store ? where.store.dir : where.store.url, retry });
  try {
    return await connect({ url: where.url, apiKey: opts.apiKey, retry });
  } catch (err) {
    if (!(err instanceof PedigreeError)) throw err;
    const { serving } = where;
    if (err.code === 'NETWORK' && serving && !servingProcess(serving.dir)) return connect({ embedded: serving.dir, retry });
    throw connectError(err, where, opts.apiKey);
  }
}

function connectError(err: PedigreeError, where: Extract<ClientTarget, { kind: 'server' }>, apiKey: string | undefined): Error {
  const server = where.serving ? `\`pedigree start\` (pid ${where.serving.pid}) at ${where.url}, which holds the store in ${where.serving.dir}` : `the Pedigree server at ${where.url}`;
  switch (err.code) {
    case 'NETWORK':
      return new Error(`cannot reach ${server} (${networkReason(err)})${where.serving ? '' : '; is it running? (`pedigree start` serves one)'}`, { cause: err });
    case 'UNAUTHORIZED':
      return new Error(
        apiKey
          ? `${server} refused the key in PEDIGREE_API_KEY: ${serverMessage(err)}`
          : `${server} needs an API key: set PEDIGREE_API_KEY to one (\`pedigree keys create --project NAME\` makes one)`,
        { cause: err },
      );
    default:
      return err;
  }
}

/** A failed call, in one line: what the server said, or why there was no answer. */
export function clientErrorReason(err: PedigreeError): string {
  if (err.code === 'NETWORK') return err.message.split('\n')[0]!;
  const message = serverMessage(err).split('\n')[0]!;
  // A server started before an upgrade (its web app is built once, at `npm start`) lacks what newer commands ask.
  const missing = err.code === 'NOT_FOUND' ? /^No procedure found on path "([^"]+)"/.exec(message) : null;
  if (missing) return `the server has no ${missing[1]}: it runs an older Pedigree than this command; restart it (\`npm start\` rebuilds the web app)`;
  return message;
}

/** What the server said, without the client's `what: CODE: ` prefix. */
function serverMessage(err: PedigreeError): string {
  const marker = `: ${err.code}: `;
  const i = err.message.indexOf(marker);
  return i >= 0 ? err.message.slice(i + marker.length) : err.message;
}

/** The innermost cause of a failed connection, in a few words (fetch says only "fetch failed"). */
function networkReason(err: Error): string {
  let inner: unknown = err;
  while (inner instanceof Error && inner.cause !== undefined) inner = inner.cause;
  const code = (inner as { code?: unknown }).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'no such host';
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timed out';
  return (inner instanceof Error && inner.message) || (typeof code === 'string' ? code : 'no answer');
}

// ---- reads the commands share ------------------------------------------------

/** A run from a full id or the unique prefix people copy out of `pedigree runs`. */
export async function getRun(client: Client, idOrPrefix: string): Promise<RunView> {
  // The server refuses these too, in zod's words (`runId: Too small…`); this is how the CLI has always put it.
  if (!/^[0-9a-f-]{4,36}$/i.test(idOrPrefix)) throw new Error(`not a run id or id prefix: ${JSON.stringify(idOrPrefix)}`);
  try {
    return await client.run(idOrPrefix);
  } catch (err) {
    // The server quotes what it was sent; the CLI has always said it plainly.
    if (err instanceof PedigreeError && err.code === 'NOT_FOUND') throw new Error(`run ${idOrPrefix} not found`, { cause: err });
    throw err;
  }
}

export async function projectNames(client: Client): Promise<Map<string, string>> {
  return new Map((await client.projects()).map((p) => [p.id, p.name]));
}

/** Runs of one project, or of every project the caller sees, newest first. */
export async function listRuns(client: Client, projectName: string | undefined, filter: RunFilter): Promise<{ runs: RunView[]; total: number }> {
  const projects = projectName ? [projectName] : (await client.projects()).map((p) => p.id);
  const pages = await Promise.all(projects.map((project) => client.runs({ ...filter, project })));
  return newestFirst(pages, filter.limit);
}
