#!/usr/bin/env node
// `npm test`: make sure the real servers the tests spawn are installed, then
// run vitest with any extra CLI args and exit with its status.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';

// Binaries the test suite spawns, with the package that provides each.
const REQUIRED = [
  { bin: 'redis-server', apt: 'redis-server', brew: 'redis' },
  { bin: 'nats-server', apt: 'nats-server', brew: 'nats-server' },
  // The browser tests (test/browser) drive it with playwright-core; CHROMIUM_PATH overrides the lookup.
  { bin: 'chromium', alt: ['chromium-browser'], env: 'CHROMIUM_PATH', apt: 'chromium', brew: '--cask chromium' },
  // The deploy tests (test/deploy) check and unit-test the Prometheus alert rules with it.
  { bin: 'promtool', apt: 'prometheus', brew: 'prometheus' },
];

// Debian installs nats-server into /usr/sbin, which is not on a normal user's
// PATH; include the sbin dirs for the lookup and for the tests we launch.
const sbin = ['/usr/local/sbin', '/usr/sbin', '/sbin'];
const pathDirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
const PATH = [...pathDirs, ...sbin.filter((d) => !pathDirs.includes(d))].join(delimiter);

const executable = (path) => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const onPath = (bin) => PATH.split(delimiter).some((dir) => executable(join(dir, bin)));
const present = (r) => (r.env && process.env[r.env] ? executable(process.env[r.env]) : [r.bin, ...(r.alt ?? [])].some(onPath));
const missing = () => REQUIRED.filter((r) => !present(r));

let absent = missing();
if (absent.length && existsSync('/etc/debian_version') && process.getuid?.() === 0) {
  const pkgs = absent.map((r) => r.apt);
  console.error(`[run-tests] installing missing test dependencies: ${pkgs.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) => spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env }).status === 0;
  if (!apt(['update']) || !apt(['install', '-y', '--no-install-recommends', ...pkgs])) {
    console.error('[run-tests] apt-get failed');
    process.exit(1);
  }
  absent = missing();
}
if (absent.length) {
  console.error(
    `[run-tests] missing required binaries: ${absent.map((r) => r.bin).join(', ')}\n` +
      'Install them, then re-run `npm test`:\n' +
      `  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${absent.map((r) => r.apt).join(' ')}\n` +
      `  macOS:         brew install ${absent.map((r) => r.brew).join(' ')}`,
  );
  process.exit(1);
}

const child = spawn('npx', ['vitest', 'run', ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, PATH },
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
child.on('error', (e) => {
  console.error(`[run-tests] could not start vitest: ${e.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => process.exit(code ?? 128 + (osConstants.signals[signal] ?? 0)));
