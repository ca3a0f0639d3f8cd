import { parseArgs } from 'node:util';

/** A mistake in how the command was typed: exit code 2, and a pointer to the help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface OptionSpec {
  name: string;
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder shown in help for a string option's value (NAME, N, DIR). */
  value?: string;
  description: string;
}

export const GLOBAL_OPTIONS: OptionSpec[] = [
  { name: 'home', type: 'string', value: 'DIR', description: 'embedded store directory (default: $PEDIGREE_HOME, else ./.pedigree)' },
  { name: 'url', type: 'string', value: 'URL', description: 'a PostgreSQL server instead (default: $DATABASE_URL)' },
  {
    name: 'server',
    type: 'string',
    value: 'URL',
    description: 'read (and record) through a Pedigree server, http://… (default: $PEDIGREE_SERVER; else the `pedigree start` serving the store, if one is)',
  },
  { name: 'json', type: 'boolean', description: 'machine-readable output' },
  { name: 'help', type: 'boolean', short: 'h', description: 'help for pedigree, or for one command' },
  { name: 'version', type: 'boolean', short: 'V', description: 'print the version' },
];

/** Global options that take a value: their value is not the command word. */
const GLOBAL_VALUE_OPTIONS = new Set(GLOBAL_OPTIONS.filter((o) => o.type === 'string').flatMap((o) => [`--${o.name}`, ...(o.short ? [`-${o.short}`] : [])]));

/**
 * Finds the command word so that global options may come before or after it
 * (`pedigree --home x runs` and `pedigree runs --home x` mean the same).
 */
export function splitCommand(argv: readonly string[]): { command: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (GLOBAL_VALUE_OPTIONS.has(arg)) {
      i++;
      continue;
    }
    if (!arg.startsWith('-')) return { command: arg, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { command: undefined, rest: [...argv] };
}

export interface ParsedArgs {
  positionals: string[];
  string(name: string): string | undefined;
  flag(name: string): boolean;
}

/** node:util parseArgs in strict mode, with its errors reworded as one-line usage errors. */
export function parseOptions(args: readonly string[], specs: readonly OptionSpec[], commandName?: string): ParsedArgs {
  const options = Object.fromEntries(specs.map((s) => [s.name, { type: s.type, ...(s.short ? { short: s.short } : {}) }]));
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...args], options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(rewordParseError(err, commandName));
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  return {
    positionals: parsed.positionals,
    string: (name) => {
      const v = values[name];
      return typeof v === 'string' ? v : undefined;
    },
    flag: (name) => values[name] === true,
  };
}

function rewordParseError(err: unknown, commandName: string | undefined): string {
  const code = (err as { code?: string }).code;
  const message = (err as Error).message ?? String(err);
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? '';
  const helpHint = commandName ? `pedigree ${commandName} --help` : 'pedigree --help';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted}${commandName ? ` for ${commandName}` : ''} (see \`${helpHint}\`)`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      // "Option '--limit <value>' argument missing" or "Option '--json' does not take an argument"
      return /argument missing/.test(message) ? `option ${quoted.replace(/ <value>$/, '')} needs a value` : `option ${quoted} takes no value`;
    default:
      return message.split('\n')[0]!;
  }
}

/** A positive integer option, bounded; undefined when absent. */
export function intOption(parsed: ParsedArgs, name: string, range: { min: number; max: number }): number | undefined {
  const raw = parsed.string(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < range.min || n > range.max) throw new UsageError(`--${name} must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(raw)}`);
  return n;
}

/** A string option that must be one of `allowed`; undefined when absent. */
export function choiceOption<T extends string>(parsed: ParsedArgs, name: string, allowed: readonly T[]): T | undefined {
  const raw = parsed.string(name);
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}; got ${JSON.stringify(raw)}`);
  return raw as T;
}

/** An environment variable's value (`raw`, see env.ts) that must be one of `allowed` when set. */
export function choiceEnv<T extends string>(name: string, raw: string | undefined, allowed: readonly T[]): T | undefined {
  if (!raw) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw new UsageError(`${name} must be one of ${allowed.join(', ')}; got ${JSON.stringify(raw)}`);
  return raw as T;
}

/** The closest of `names` to a mistyped one, for "did you mean …?" (edit distance ≤ 2). */
export function closest(typed: string, names: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(typed, name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
