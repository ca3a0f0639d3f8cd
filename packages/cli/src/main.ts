import { runCli } from './cli.ts';
import { processTerminal } from './terminal.ts';

// `pedigree … | head` closes the pipe early: the reader's choice, not an error.
// The rest of the output is dropped, and the command still finishes and closes the store.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});

// exitCode rather than exit(): lets stdout drain before the process ends.
process.exitCode = await runCli(process.argv.slice(2), processTerminal());
