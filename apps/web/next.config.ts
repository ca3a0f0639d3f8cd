import path from 'node:path';
import type { NextConfig } from 'next';

// The monorepo root: our workspace packages (TypeScript sources with `.ts`
// imports) live outside this app, and Turbopack bundles them from there.
const root = path.resolve(import.meta.dirname, '../..');

const nextConfig: NextConfig = {
  // `pedigree start` runs this app in its own process (a custom server), so the
  // route handler's copy of @pedigree/api finds the store the CLI opened.
  transpilePackages: ['@pedigree/api', '@pedigree/lineage', '@pedigree/ledger', '@pedigree/db'],
  // Loaded by Node at run time, never bundled: PGlite reads its wasm and data
  // files relative to its package, and the database drivers are plain Node code.
  serverExternalPackages: ['@electric-sql/pglite', 'postgres', '@prisma/client', '@prisma/adapter-pg', 'pg', 'pglite-prisma-adapter'],
  // Types are checked by `npm run typecheck` (this workspace's typecheck task) like every other
  // package; a type error should not stop `npm start` from building and serving.
  typescript: { ignoreBuildErrors: true },
  turbopack: { root },
  outputFileTracingRoot: root,
  poweredByHeader: false,
};

export default nextConfig;
