import type { StoreTarget } from '@pedigree/db';
import type { Pedigree } from '@pedigree/lineage';
import type { OptionSpec, ParsedArgs } from './args.ts';
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
  /** The store the global options and environment point at. */
  target: StoreTarget;
  /**
   * Opens that store (validate arguments first: opening costs a second or
   * more). The dispatcher closes it, whatever happens. A missing embedded
   * store is an error unless `create`: reading commands should not leave an
   * empty store behind in whatever directory they were run from.
   */
  openStore(opts?: { migrate?: boolean; create?: boolean }): Promise<Pedigree>;
}
