// Launches the system's Chromium (Debian package `chromium`) headless through
// playwright-core, which drives it over CDP and downloads nothing. `npm test`
// installs the package when it is missing (test/run-tests.mjs).
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

const FLAGS = [
  '--no-sandbox', // tests run as root in CI containers, where the sandbox cannot start
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** CHROMIUM_PATH, else `chromium` or `chromium-browser` on PATH. */
export function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  for (const bin of ['chromium', 'chromium-browser']) {
    for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
      const path = join(dir, bin);
      try {
        accessSync(path, constants.X_OK);
        return path;
      } catch {
        // next
      }
    }
  }
  throw new Error('Chromium not found: install it (apt-get install chromium) or set CHROMIUM_PATH');
}

/**
 * One headless Chromium for a test file; each test opens its own contexts (a
 * context is a fresh profile: its own cookies, storage, locks). playwright-core
 * gives every launch a new temporary user-data-dir and deletes it on close.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: FLAGS, timeout: 30_000 });
}
