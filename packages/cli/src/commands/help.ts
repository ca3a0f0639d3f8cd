import { closest, GLOBAL_OPTIONS, UsageError, type OptionSpec } from '../args.ts';
import type { Command } from '../command.ts';
import type { Paint } from '../format.ts';

/** `help` needs the list it belongs to; the registry passes it in. */
export function helpCommand(commands: () => readonly Command[]): Command {
  return {
    name: 'help',
    summary: "this overview, or one command's options",
    usage: 'help [command]',
    args: [{ name: 'command', optional: true }],
    async run(ctx) {
      const name = ctx.args[0];
      if (!name) return ctx.term.line(globalHelp(commands(), ctx.term.paint));
      const command = commands().find((c) => c.name === name);
      if (!command) throw unknownCommand(name, commands());
      ctx.term.line(commandHelp(command, ctx.term.paint));
    },
  };
}

export function unknownCommand(name: string, commands: readonly Command[]): UsageError {
  const guess = closest(name, commands.map((c) => c.name));
  return new UsageError(`unknown command '${name}'${guess ? ` (did you mean '${guess}'?)` : ''}; see \`pedigree --help\``);
}

const optionLabel = (o: OptionSpec) => `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.value ? ` ${o.value}` : ''}`;

function optionLines(options: readonly OptionSpec[]): string[] {
  const width = Math.max(...options.map((o) => optionLabel(o).length));
  return options.map((o) => `  ${optionLabel(o).padEnd(width)}  ${o.description}`);
}

export function globalHelp(commands: readonly Command[], paint: Paint): string {
  const width = Math.max(...commands.map((c) => c.usage.split(' [')[0]!.length));
  return [
    `${paint.bold('pedigree')}: lineage and experiment tracking for multi-stage model training`,
    '',
    `${paint.bold('Usage:')} pedigree <command> [options]`,
    '',
    paint.bold('Commands:'),
    ...commands.map((c) => `  ${c.usage.split(' [')[0]!.padEnd(width)}  ${c.summary}`),
    '',
    paint.bold('Global options (anywhere on the line):'),
    ...optionLines(GLOBAL_OPTIONS),
    '',
    '<run> is a run id, or a unique prefix of one such as the 8 characters `pedigree runs` shows.',
    'Run `pedigree <command> --help` for the options of one command.',
  ].join('\n');
}

export function commandHelp(command: Command, paint: Paint): string {
  return [
    `${paint.bold('Usage:')} pedigree ${command.usage} [--json]`,
    '',
    command.summary,
    ...(command.description ? ['', command.description] : []),
    ...(command.options?.length ? ['', paint.bold('Options:'), ...optionLines(command.options)] : []),
    '',
    paint.dim('Global options: --home DIR, --url URL, --server URL, --json, --help (see `pedigree --help`).'),
  ].join('\n');
}
