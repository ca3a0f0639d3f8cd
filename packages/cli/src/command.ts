import type { Pedigree as Client } from '@pedigree/client';
import type { StoreTarget } from '@pedigree/db';
import type { Pedigree } from '@pedigree/lineage';
import type { OptionSpec, ParsedArgs } from './args.ts';
import type { ClientTarget } from './client.ts';
import type { CliEnv } from './env.ts';
import type { Terminal } from './terminal.ts';

export interface Command {
  name: string;
  /** One line in `pedigree --help`. */
  summary: string;
  /** What follows `pedigree ` in the usage line, e.g. `show <run>`. */
  usage: string;
  /** A paragraph for `pedigree <command> --help`. */
  description?: string;
  options?: OptionSpec[];
  /** Positional arguments, in order: their count is checked before the command runs. */
  args?: { name: string; optional?: boolean }[];
  /** Returns the exit code (0 when omitted). */
  run(ctx: Context): Promise<number | void>;
}

export interface Context {
  args: string[];
  options: ParsedArgs;
  json: boolean;
  term: Terminal;
  /** The CLI's environment, read once (env.ts). */
  env: CliEnv;
  /** The store the global options and environment point at. */
  target: StoreTarget;
  /** The server --server or $PEDIGREE_SERVER names (checked: http:// or https://), if any. */
  server: string | undefined;
  /**
   * Where `client()` goes: that server; else the `pedigree start` serving the
   * embedded store, if one is; else the store itself. Decided anew at each call.
   */
  clientTarget(): ClientTarget;
  /**
   * The user commands' way in: a Pedigree client connected to `clientTarget()`,
   * so that they work beside a running server. The dispatcher closes it. A
   * missing embedded store is an error unless `create`. `recording`: for
   * long-running writers (train, demo), which announce where they record
   * themselves and ride out a server restart instead of failing fast.
   */
  client(opts?: { create?: boolean; recording?: boolean }): Promise<Client>;
  /**
   * Opens that store itself, for the operator commands (validate arguments
   * first: opening costs a second or more). The dispatcher closes it,
   * whatever happens. A missing embedded store is an error unless `create`:
   * commands should not leave an empty store behind in whatever directory
   * they were run from. Refused while `pedigree start` serves the embedded
   * store (PGlite opens in one process at a time), and with --server.
   * `directUrl`: the server's primary itself, when the store's URL is a
   * pooler (migrations and LISTEN go there).
   */
  openStore(opts?: { migrate?: boolean; create?: boolean; directUrl?: string }): Promise<Pedigree>;
}
