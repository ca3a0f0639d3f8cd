// First step of `npm start`, `npm test` and `npm run bench`: makes a fresh
// clone ready without anything installed by hand. Idempotent and quick when
// there is nothing to do. Uses only Node's standard library (it runs before
// node_modules exists).
import { execFileSync, execSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const forTests = process.argv.includes('--test');
const say = (msg) => process.stderr.write(`setup: ${msg}\n`);
const run = (cmd, opts = {}) => execSync(cmd, { cwd: root, stdio: 'inherit', ...opts });
const has = (cmd) => {
  try {
    execSync(cmd.startsWith('dpkg:') ? `dpkg -s ${cmd.slice(5)}` : `command -v ${cmd}`, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

// 0. System packages the tests need, installed when missing (Debian). Before npm ci: the `gl`
// addon builds from source during the install and needs libxi-dev by then.
if (forTests) {
  const wanted = [
    // [command that proves it is there (or dpkg:<package>), Debian packages]
    ['psql', 'postgresql-client'],
    // test/notebook.test.ts: nbconvert runs examples/*.ipynb on Deno's kernel (npm `deno`).
    // python3-ipykernel has no command of its own: it comes along with nbconvert.
    ['jupyter-nbconvert', 'jupyter-nbconvert python3-ipykernel'],
    ['jupyter-kernelspec', 'jupyter-client'],
    // test/web.test.ts: the dashboard in headless Chromium (playwright-core; never a downloaded browser).
    ['chromium', 'chromium'],
    // packages/trainer: gpu.js's headlessgl mode needs an X server (the tests start Xvfb
    // themselves; xauth is for `xvfb-run`), and the `gl` addon needs libxi-dev to build.
    ['Xvfb', 'xvfb xauth'],
    // test/ledger-verification.doc.test.ts: the Python verifier written from docs/ledger-verification.md (Ed25519).
    ['dpkg:python3-cryptography', 'python3-cryptography'],
    ['dpkg:libxi-dev', 'libxi-dev'],
    // test/pooler.test.ts and the ledger suites behind a pooler: PgBouncer in transaction mode, in
    // front of a PostgreSQL cluster the tests start themselves (postgresql-15's initdb, pg_basebackup).
    ['dpkg:pgbouncer', 'pgbouncer'],
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
}

// 1. npm dependencies, from the lockfile.
const lock = path.join(root, 'package-lock.json');
const marker = path.join(root, 'node_modules', '.package-lock.json');
if (!existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000)) {
  say('installing npm dependencies (npm ci)…');
  run(existsSync(lock) ? 'npm ci --no-audit --no-fund' : 'npm install --no-audit --no-fund');
}

// 1b. The `gl` addon (gpu.js's headlessgl mode) builds from source at install time; npm drops it
// silently when that fails (libxi-dev missing then). Build it again once the headers are there.
if (forTests && !existsSync(path.join(root, 'node_modules/gl/build/Release/webgl.node')) && has('dpkg:libxi-dev')) {
  say('building the gl addon (npm rebuild gl, a minute or two)…');
  try {
    run('npm rebuild gl');
  } catch (err) {
    say(`gl did not build (${err.message}); the headlessgl trainer tests will say so`);
  }
}

// 2. The Prisma client (generated offline; postinstall normally did it), again whenever the schema changed.
const client = path.join(root, 'packages/db/src/generated/prisma/client.ts');
if (!existsSync(client) || statSync(path.join(root, 'prisma/schema.prisma')).mtimeMs > statSync(client).mtimeMs) {
  execFileSync(process.execPath, [path.join(root, 'scripts/generate.mjs')], { stdio: 'inherit' });
}

// 2b. Fixes to installed dependencies not yet released upstream (postinstall normally applied them; idempotent).
execFileSync(process.execPath, [path.join(root, 'scripts/patch-deps.mjs')], { stdio: 'inherit' });

// 3. The web app's production build (`pedigree start` serves it in-process), again whenever
// what it bundles changed: its own sources, the packages the API is made of, the lockfile.
const web = path.join(root, 'apps/web');
const buildId = path.join(web, '.next/BUILD_ID');
const webInputs = ['apps/web', 'packages/api/src', 'packages/lineage/src', 'packages/ledger/src', 'packages/db/src', 'package-lock.json'];
const builtAt = existsSync(buildId) ? statSync(buildId).mtimeMs : 0;
const changed = webInputs.find((p) => newestMtime(path.join(root, p)) > builtAt);
if (changed) {
  say(existsSync(buildId) ? `rebuilding the web app (${changed} changed; next build, 10–30 s)…` : 'building the web app (next build, 10–30 s)…');
  const startedAt = new Date();
  const nextBin = path.join(path.dirname(createRequire(path.join(web, 'package.json')).resolve('next/package.json')), 'dist/bin/next');
  const build = spawnSync(process.execPath, [nextBin, 'build'], { cwd: web, encoding: 'utf8', env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' } });
  if (build.status === 0) {
    // Stamped with the time the build began: a source saved during the build triggers the next one.
    utimesSync(buildId, startedAt, startedAt);
  } else {
    process.stderr.write(`${build.stdout ?? ''}${build.stderr ?? ''}`);
    say(`the web app failed to build (apps/web: next build exited ${build.status ?? build.signal}); \`pedigree start\` cannot serve until it builds`);
    if (!forTests) process.exit(1); // the tests that need no web app still run
  }
}

/** The newest modification time of a file or of any file under a directory (build outputs, dependencies and tests aside). */
function newestMtime(p) {
  const stat = statSync(p, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (!stat.isDirectory()) return /\.test\.ts$|\.tsbuildinfo$/.test(p) ? 0 : stat.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(p)) {
    if (entry === 'node_modules' || entry === '.next' || entry === '.turbo' || entry === 'next-env.d.ts') continue;
    newest = Math.max(newest, newestMtime(path.join(p, entry)));
  }
  return newest;
}

if (forTests) {
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
