// Fixes applied to installed dependencies until their authors release them.
// Idempotent; run by postinstall and by scripts/setup.mjs. Each names the
// upstream issue, and says so (without failing) once the code it patches has
// changed, so that it can be removed.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const say = (msg) => process.stderr.write(`patch-deps: ${msg}\n`);

// postgres.js (3.4.9 and before): a write shorter than 1 KiB is sent on the next tick
// (setImmediate). When the connection closes first, that tick writes to a null socket and
// throws outside any promise: the process dies. It happens whenever the server goes away
// under a transaction: `begin` sends ROLLBACK on its (now closed) connection. Seen in
// test/failover.test.ts (kill -9 of the primary under load). porsager/postgres#1208; the
// guard is the one proposed there (#1209): settle the queries with CONNECTION_CLOSED, so
// that the caller gets an error it can handle instead of a crash or a query that never ends.
const POSTGRES_BEFORE = `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)`;
const POSTGRES_AFTER = `  function nextWrite(fn) {
    if (!socket) { // pedigree: scripts/patch-deps.mjs (porsager/postgres#1208)
      nextWriteTimer !== null && clearImmediate(nextWriteTimer)
      chunk = nextWriteTimer = null
      error(Errors.connection('CONNECTION_CLOSED', options))
      return false
    }
    const x = socket.write(chunk, fn)`;

/** Every installed copy of `name`: at the root and under each workspace package. */
function installed(name) {
  const dirs = [path.join(root, 'node_modules', name)];
  for (const group of ['packages', 'apps']) {
    const base = path.join(root, group);
    if (!existsSync(base)) continue;
    for (const pkg of readdirSync(base)) dirs.push(path.join(base, pkg, 'node_modules', name));
  }
  return dirs.filter((d) => existsSync(path.join(d, 'package.json')));
}

for (const dir of installed('postgres')) {
  const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const variant of ['src', 'cjs/src', 'cf/src']) {
    const file = path.join(dir, variant, 'connection.js');
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    if (text.includes(POSTGRES_AFTER)) continue;
    if (!text.includes(POSTGRES_BEFORE)) {
      say(`postgres ${version} (${path.relative(root, file)}): nextWrite has changed; check whether porsager/postgres#1208 is fixed and drop this patch`);
      continue;
    }
    writeFileSync(file, text.replace(POSTGRES_BEFORE, POSTGRES_AFTER));
  }
}
