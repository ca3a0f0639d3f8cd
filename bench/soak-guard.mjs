// The soak's watchdog (bench/soak.ts starts it): plain JavaScript, so that it
// starts fast and runs without tsx. It reads lines from stdin, the write end
// of which only the soak holds:
//
//   admin <postgres url>   how to reach the server to drop a database
//   db <name>              a database to drop
//   home <dir>             a temporary directory to remove
//   pgid <n>               a process group to kill (the server's)
//   done                   the soak cleaned up itself: exit and do nothing
//
// When stdin ends without `done`, the soak is gone without cleaning up (tsx's
// CLI SIGKILLs its child when Ctrl-C is not acknowledged within 30 ms, which on
// a loaded machine is common), so this does it: the process groups get SIGTERM,
// then SIGKILL, and the databases and directories are removed.
import { rm } from 'node:fs/promises';

const admin = [];
const dbs = [];
const homes = [];
const groups = [];
let done = false;
let buffered = '';

const alive = (pgid) => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function cleanUp() {
  for (const pgid of groups) {
    if (!alive(pgid)) continue;
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {}
    for (let i = 0; i < 100 && alive(pgid); i++) await sleep(100);
    if (alive(pgid)) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {}
    }
  }
  if (dbs.length && admin.length) {
    const { default: postgres } = await import('postgres');
    const sql = postgres(admin[admin.length - 1], { max: 1, onnotice: () => {} });
    try {
      for (const name of dbs) if (/^[a-z0-9_]+$/.test(name)) await sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } finally {
      await sql.end();
    }
  }
  for (const dir of homes) await rm(dir, { recursive: true, force: true });
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl).trim();
    buffered = buffered.slice(nl + 1);
    const [what, ...rest] = line.split(' ');
    const arg = rest.join(' ');
    if (what === 'done') done = true;
    else if (what === 'admin') admin.push(arg);
    else if (what === 'db') dbs.push(arg);
    else if (what === 'home') homes.push(arg);
    else if (what === 'pgid' && Number(arg) > 1) groups.push(Number(arg));
  }
});
process.stdin.on('end', () => {
  if (done) process.exit(0);
  cleanUp().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
// The soak's own SIGINT/SIGTERM handling decides; this outlives it.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
