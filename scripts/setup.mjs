// First step of `npm start`, `npm test` and `npm run bench`: makes a fresh
// clone ready without anything installed by hand. Idempotent and quick when
// there is nothing to do. Uses only Node's standard library (it runs before
// node_modules exists).
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const forTests = process.argv.includes('--test');
const say = (msg) => process.stderr.write(`setup: ${msg}\n`);
const run = (cmd, opts = {}) => execSync(cmd, { cwd: root, stdio: 'inherit', ...opts });
const has = (cmd) => {
  try {
    execSync(`command -v ${cmd}`, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

// 1. npm dependencies, from the lockfile.
const lock = path.join(root, 'package-lock.json');
const marker = path.join(root, 'node_modules', '.package-lock.json');
if (!existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000)) {
  say('installing npm dependencies (npm ci)…');
  run(existsSync(lock) ? 'npm ci --no-audit --no-fund' : 'npm install --no-audit --no-fund');
}

// 2. The Prisma client (generated offline; postinstall normally did it), again whenever the schema changed.
const client = path.join(root, 'packages/db/src/generated/prisma/client.ts');
if (!existsSync(client) || statSync(path.join(root, 'prisma/schema.prisma')).mtimeMs > statSync(client).mtimeMs) {
  execFileSync(process.execPath, [path.join(root, 'scripts/generate.mjs')], { stdio: 'inherit' });
}

if (forTests) {
  // 3. System packages the tests need, installed when missing (Debian).
  const wanted = [
    // [command that proves it is there, Debian package]
    ['psql', 'postgresql-client'],
  ];
  const missing = wanted.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
  if (missing.length) {
    if (process.getuid?.() === 0 && has('apt-get')) {
      say(`installing ${missing.join(' ')} (apt-get)…`);
      run('apt-get update -qq');
      run(`DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing.join(' ')}`);
    } else {
      say(`missing system packages: ${missing.join(' ')}; the tests that need them will say so`);
    }
  }

  // 4. The local PostgreSQL server for the server-mode tests: start it if it is installed and down.
  if (!process.env.PEDIGREE_TEST_DATABASE_URL && has('pg_lsclusters')) {
    const clusters = execSync('pg_lsclusters --no-header', { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    for (const line of clusters) {
      const [version, name, , status] = line.split(/\s+/);
      if (status !== 'online') {
        say(`starting PostgreSQL ${version}/${name}…`);
        try {
          run(`pg_ctlcluster --skip-systemctl-redirect ${version} ${name} start`);
        } catch (err) {
          say(`could not start PostgreSQL ${version}/${name}: ${err.message}`);
        }
      }
    }
  }
}
