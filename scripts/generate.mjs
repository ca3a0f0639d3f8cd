// Generates the Prisma client offline. The Prisma CLI insists on finding a
// native schema engine (it would download one); `generate` itself never runs
// it, so any existing file satisfies the check (the download needs Prisma's
// servers, which an offline machine cannot reach).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const cli = path.join(root, 'node_modules', 'prisma', 'build', 'index.js');
if (!existsSync(cli)) process.exit(0); // partial install: nothing to generate yet
execFileSync(process.execPath, [cli, 'generate', '--schema', 'prisma/schema.prisma'], {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
  env: {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? process.execPath,
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
    CHECKPOINT_DISABLE: '1',
    PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: '1',
  },
});
