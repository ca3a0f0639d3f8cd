import { existsSync } from 'node:fs';
import { PedigreeError, type Pedigree as Client } from '@pedigree/client';
import type { StoreTarget } from '@pedigree/db';
import { LedgerError } from '@pedigree/ledger';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import packageJson from '../package.json' with { type: 'json' };
import { GLOBAL_OPTIONS, parseOptions, splitCommand, UsageError } from './args.ts';
import { clientErrorReason, clientTarget, connectClient, serverFrom } from './client.ts';
import type { Command, Context } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { commandHelp, globalHelp, unknownCommand } from './commands/help.ts';
import { readCliEnv } from './env.ts';
import { assertStoreFree } from './server.ts';
import { targetFrom } from './store.ts';
import type { Terminal } from './terminal.ts';

export const VERSION: string = packageJson.version;

/** Runs one `pedigree …` command line; returns the exit code (0 ok, 1 failed, 2 usage error). */
export async function runCli(argv: readonly string[], term: Terminal, commands: readonly Command[] = COMMANDS): Promise<number> {
  const stores: Pedigree[] = [];
  const clients: Client[] = [];
  try {
    const split = splitCommand(argv);
    if (split.command === undefined) {
      const globals = parseOptions(split.rest, GLOBAL_OPTIONS);
      if (globals.flag('version')) term.line(VERSION);
      else term.line(globalHelp(commands, term.paint));
      return 0;
    }
    const command = commands.find((c) => c.name === split.command);
    if (!command) throw unknownCommand(split.command, commands);
    const options = parseOptions(split.rest, [...GLOBAL_OPTIONS, ...(command.options ?? [])], command.name);
    if (options.flag('help')) {
      term.line(commandHelp(command, term.paint));
      return 0;
    }
    if (options.flag('version')) {
      term.line(VERSION);
      return 0;
    }
    checkArgCount(command, options.positionals);
    const flags = { home: options.string('home'), url: options.string('url'), server: options.string('server') };
    const target = targetFrom(flags);
    // The environment of the user commands' client, read here once: the store's own settings are @pedigree/db's.
    const env = readCliEnv();
    const server = serverFrom(flags, env.server);
    const apiKey = env.apiKey;
    const ctx: Context = {
      args: options.positionals,
      options,
      json: options.flag('json'),
      term,
      env,
      target,
      server,
      clientTarget: () => clientTarget(target, server),
      async client(opts = {}) {
        const where = clientTarget(target, server);
        if (where.kind === 'embedded') assertStoreExists(where.store, opts.create);
        else if (where.serving && !opts.recording && !ctx.json) {
          term.error(term.paint.dim(`(through \`pedigree start\`, pid ${where.serving.pid}, at ${where.url}: it holds the store in ${where.serving.dir})`));
        }
        const client = await connectClient(where, { apiKey, recording: opts.recording });
        clients.push(client);
        return client;
      },
      async openStore(opts = {}) {
        assertStoreFree(command.name, target, flags.server);
        assertStoreExists(target, opts.create);
        if (opts.directUrl && !('url' in target)) throw new UsageError('--direct-url names the primary behind a server store: give --url (or DATABASE_URL) too');
        const pd = await openPedigree(opts.directUrl && 'url' in target ? { ...target, directUrl: opts.directUrl } : target, { migrate: opts.migrate });
        stores.push(pd);
        return pd;
      },
    };
    const code = (await command.run(ctx)) ?? 0;
    // Closed here, before the exit code is final: closing flushes what a trainer still buffers, and a failure there fails the command.
    for (const client of clients.splice(0)) await client.close();
    return code;
  } catch (err) {
    term.error(`pedigree: ${reasonOf(err)}`);
    if (term.debug && !(err instanceof UsageError) && err instanceof Error && err.stack) term.error(err.stack);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    for (const opened of [...clients, ...stores]) await opened.close().catch(() => {});
  }
}

/** Reading commands should not leave an empty store behind in whatever directory they were run from. */
function assertStoreExists(target: StoreTarget, create: boolean | undefined): void {
  if ('dir' in target && !create && !existsSync(target.dir)) {
    throw new Error(`no store in ${target.dir}; create one with \`pedigree start\`, or point --home or PEDIGREE_HOME at one`);
  }
}

function checkArgCount(command: Command, positionals: string[]): void {
  const specs = command.args ?? [];
  const required = specs.filter((a) => !a.optional);
  const hint = `usage: pedigree ${command.usage}`;
  if (positionals.length < required.length) {
    const missing = required[positionals.length]!.name;
    throw new UsageError(`${command.name} needs a <${missing}>${missing === 'run' ? ' id or prefix (see `pedigree runs`)' : ''}; ${hint}`);
  }
  if (positionals.length > specs.length) throw new UsageError(`unexpected argument '${positionals[specs.length]}' for ${command.name}; ${hint}`);
}

/** One line a person can act on. The store's messages are written for people already; this adds context where they are terse. */
function reasonOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const firstLine = (err.message.split('\n')[0] ?? '').replace(/^pedigree: /, '');
  if (err instanceof LedgerError) {
    switch (err.code) {
      case 'CONFLICT':
        return `${firstLine} (another writer got there first; run the command again)`;
      case 'NOT_FOUND':
      case 'INVALID':
      case 'IDEMPOTENCY_MISMATCH':
      case 'TOO_LARGE':
        return firstLine;
      default: {
        const unknown: never = err.code;
        return `${firstLine} (${String(unknown)})`;
      }
    }
  }
  if (err instanceof PedigreeError) return clientErrorReason(err);
  const systemCode = (err as { code?: unknown }).code;
  if (systemCode === 'ECONNREFUSED' || systemCode === 'ENOTFOUND' || systemCode === 'ETIMEDOUT') return `cannot reach the database server: ${firstLine}`;
  return firstLine || err.name;
}
