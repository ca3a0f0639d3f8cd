import { painter, type Paint } from './format.ts';

/**
 * Where a command writes, and what the terminal can show. The one place the
 * CLI looks at its process (streams, NO_COLOR, COLUMNS); the store's own
 * settings (DATABASE_URL, PEDIGREE_HOME) are read by @pedigree/db.
 */
export interface Terminal {
  /** One line of output on stdout. */
  line(text?: string): void;
  /** Output for scripts: pretty-printed JSON on stdout. */
  json(value: unknown): void;
  /** One line on stderr. */
  error(text: string): void;
  /** Columns to fit output into; Infinity when stdout is not a terminal (pipes get whole lines). */
  readonly width: number;
  readonly paint: Paint;
  /** stderr, when it is a terminal that can show a redrawing progress line; else null. */
  readonly progressStream: NodeJS.WriteStream | null;
  /** PEDIGREE_DEBUG set: unexpected errors print their stack too. */
  readonly debug: boolean;
}

export function processTerminal(): Terminal {
  const { stdout, stderr, env } = process;
  const colour = Boolean(stdout.isTTY) && !env.NO_COLOR;
  const columns = stdout.isTTY ? stdout.columns : Number(env.COLUMNS);
  return {
    line: (text = '') => void stdout.write(`${text}\n`),
    json: (value) => void stdout.write(`${JSON.stringify(value, null, 2)}\n`),
    error: (text) => void stderr.write(`${text}\n`),
    width: columns > 0 ? columns : Infinity,
    paint: painter(colour),
    progressStream: stderr.isTTY ? stderr : null,
    debug: Boolean(env.PEDIGREE_DEBUG),
  };
}
