/**
 * The client's defaults from the environment, the one place it reads it:
 * `connect()` uses them when its options leave them out. (An embedded store's
 * directory defaults to $PEDIGREE_HOME or ./.pedigree: @pedigree/db's env.ts
 * reads that.) Outside Node and Deno there is no `process`, and no defaults.
 * docs/environment.md lists every variable Pedigree reads.
 */
export interface ConnectDefaults {
  /** PEDIGREE_URL: the server `connect()` talks to when not given `url` or `embedded`. */
  url: string | undefined;
  /** PEDIGREE_API_KEY: the project's API key when not given `apiKey`. */
  apiKey: string | undefined;
}

export function connectDefaults(source: Record<string, string | undefined> | undefined = globalThis.process?.env): ConnectDefaults {
  return { url: source?.PEDIGREE_URL, apiKey: source?.PEDIGREE_API_KEY };
}
