// `npm test`: every test, on both storage modes. Server-mode tests use
// PEDIGREE_TEST_DATABASE_URL (default: the local server at 127.0.0.1:5432),
// and create and drop a database of their own per test file.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const env = {
  ...process.env,
  PEDIGREE_TEST_DATABASE_URL: process.env.PEDIGREE_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test',
};
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
const r = spawnSync(process.execPath, [vitest, 'run', ...process.argv.slice(2)], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
