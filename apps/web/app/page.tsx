import { TRPC_ENDPOINT } from '@pedigree/api';

const CLI_HINTS: [command: string, what: string][] = [
  ['npx pedigree runs', 'every run, newest first'],
  ['npx pedigree show <run>', 'one run: hyperparameters, inputs, metrics, evals'],
  ['npx pedigree lineage <run>', 'where a model came from, back to its datasets'],
  ['npx pedigree verify', 'check every hash chain'],
];

/** A placeholder until the dashboard lands: what is served here, and where to look meanwhile. */
export default function Home() {
  const widest = Math.max(...CLI_HINTS.map(([command]) => command.length));
  return (
    <main>
      <h1>Pedigree</h1>
      <p className="tagline">Lineage and experiment tracking for multi-stage model training.</p>
      <p>The dashboard arrives with a later issue. This server already speaks the API that the dashboard and the typed client use.</p>
      <h2>API</h2>
      <p>
        tRPC at <code>{TRPC_ENDPOINT}</code>, for example <a href={`${TRPC_ENDPOINT}/system.health`}><code>GET {TRPC_ENDPOINT}/system.health</code></a>.
      </p>
      <h2>Meanwhile, from a terminal</h2>
      <p>With the embedded store, stop this server first (Ctrl-C): the store opens in one process at a time.</p>
      <pre>{CLI_HINTS.map(([command, what]) => `${command.padEnd(widest)}  # ${what}`).join('\n')}</pre>
    </main>
  );
}
