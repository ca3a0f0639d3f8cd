/**
 * The CLI's own environment, read once in runCli and handed to the commands
 * as `ctx.env`. Each value is checked where it is parsed, with the flag it
 * stands in for, so a bad one fails only the commands that use it (as now).
 * The store's settings are @pedigree/db's (env.ts), the server's
 * @pedigree/api's (readServerEnv), the trainer's @pedigree/trainer's
 * (readTrainerEnv). docs/environment.md lists them all.
 */
export interface CliEnv {
  /** PEDIGREE_SERVER (--server) */
  server: string | undefined;
  /** PEDIGREE_API_KEY */
  apiKey: string | undefined;
  /** PEDIGREE_PORT (start --port) */
  port: string | undefined;
  /** PEDIGREE_DEMO (start --demo) */
  demo: string | undefined;
  /** PEDIGREE_DEMO_BACKEND (demo --backend) */
  demoBackend: string | undefined;
  /** PEDIGREE_CHECKPOINT_EVERY (start --checkpoint-every) */
  checkpointEvery: string | undefined;
  /** PEDIGREE_CHECKPOINT_KEY (--key, --checkpoint-key) */
  checkpointKey: string | undefined;
  /** PEDIGREE_DEBUG: unexpected errors print their stack too. */
  debug: boolean;
}

/** Empty values count as unset, as they do now everywhere. */
export function readCliEnv(source: NodeJS.ProcessEnv = process.env): CliEnv {
  const get = (name: string) => source[name] || undefined;
  return {
    server: get('PEDIGREE_SERVER'),
    apiKey: get('PEDIGREE_API_KEY'),
    port: get('PEDIGREE_PORT'),
    demo: get('PEDIGREE_DEMO'),
    demoBackend: get('PEDIGREE_DEMO_BACKEND'),
    checkpointEvery: get('PEDIGREE_CHECKPOINT_EVERY'),
    checkpointKey: get('PEDIGREE_CHECKPOINT_KEY'),
    debug: Boolean(source.PEDIGREE_DEBUG),
  };
}
