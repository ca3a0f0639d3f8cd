import type { Command } from '../command.ts';
import { checkpointCommand } from './checkpoint.ts';
import { demoCommand } from './demo.ts';
import { diffCommand } from './diff.ts';
import { eventsCommand } from './events.ts';
import { exportCommand } from './export.ts';
import { helpCommand } from './help.ts';
import { keysCommand } from './keys.ts';
import { lineageCommand } from './lineage.ts';
import { migrateCommand } from './migrate.ts';
import { projectsCommand } from './projects.ts';
import { replayCommand } from './replay.ts';
import { runsCommand } from './runs.ts';
import { sampleCommand } from './sample.ts';
import { showCommand } from './show.ts';
import { startCommand } from './start.ts';
import { trainCommand } from './train.ts';
import { verifyCommand } from './verify.ts';

/** Every command, in the order `pedigree --help` lists them. */
export const COMMANDS: readonly Command[] = [
  startCommand,
  runsCommand,
  showCommand,
  eventsCommand,
  lineageCommand,
  diffCommand,
  exportCommand,
  projectsCommand,
  keysCommand,
  demoCommand,
  trainCommand,
  sampleCommand,
  replayCommand,
  verifyCommand,
  checkpointCommand,
  migrateCommand,
  helpCommand(() => COMMANDS),
];
