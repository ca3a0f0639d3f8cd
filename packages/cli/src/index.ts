export { runCli, VERSION } from './cli.ts';
export { COMMANDS } from './commands/index.ts';
export type { Command, Context } from './command.ts';
export { processTerminal, type Terminal } from './terminal.ts';
