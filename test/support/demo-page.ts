// The dev server's demo on a test authority, and what a test does on the page:
// open it, sign in, read what it shows. The page is the real one (src/demo),
// its script bundled from src/client exactly as `npm start` does.
import { expect } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import { createDemoEndpoints } from '../../src/authority/demo-endpoints.js';
import { buildDemoAssets, type DemoAssets } from '../../src/demo/demo-assets.js';
import { startTestAuthority, type StartOptions, type TestAuthority } from './authority.js';

let assets: Promise<DemoAssets> | undefined;

/** A test authority serving the demo at `${httpUrl}/demo/`. */
export async function startDemoAuthority(options: StartOptions = {}): Promise<TestAuthority & { demoUrl: string }> {
  assets ??= buildDemoAssets();
  const built = await assets;
  const t = await startTestAuthority({ ...options, httpRoutes: (services) => createDemoEndpoints({ ...services, assets: built }) });
  return { ...t, demoUrl: `${t.httpUrl}/demo/` };
}

const READY = '#signed-out:not([hidden]), #signed-in:not([hidden])';

/** Opens the demo in a new tab of `context` and waits until it knows whether it is signed in. */
export async function openDemo(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  await page.goto(url);
  await page.waitForSelector(READY);
  return page;
}

/** Signs in on the page's form; resolves with the session id the page shows. */
export async function signIn(page: Page, username: string, options: { deviceName?: string; shortSession?: boolean } = {}): Promise<string> {
  await page.fill('#username', username);
  if (options.deviceName) await page.fill('#device-name', options.deviceName);
  await page.setChecked('#short-session', options.shortSession ?? false);
  await page.click('#sign-in');
  await page.waitForSelector('#signed-in:not([hidden])');
  return sessionIdOn(page);
}

export async function sessionIdOn(page: Page): Promise<string> {
  const sid = await page.textContent('#session-id');
  expect(sid).toMatch(/^[A-Za-z0-9_-]{32}$/);
  return sid!;
}

/** The device list as the page shows it: session id and whether it is this device. */
export async function devicesOn(page: Page): Promise<Array<{ sessionId: string; name: string; current: boolean }>> {
  return page.$$eval('#devices li', (items) =>
    items.map((li) => ({
      sessionId: (li as HTMLElement).dataset.sessionId ?? '',
      name: li.querySelector('strong')?.textContent ?? '',
      current: li.querySelector('.tag') !== null,
    })),
  );
}

/** The access token the page's SDK holds (read through the SDK, the only place it lives). */
export function accessTokenOn(page: Page): Promise<string> {
  return page.evaluate(() => (globalThis as any).demo.client.getAccessToken());
}

/** Counts requests the browser context sends to a path, and their answers by status. */
export function countRequests(context: BrowserContext, path: string): { sent: number; statuses: number[] } {
  const counts = { sent: 0, statuses: [] as number[] };
  context.on('request', (request) => {
    if (new URL(request.url()).pathname === path) counts.sent++;
  });
  context.on('response', (response) => {
    if (new URL(response.url()).pathname === path) counts.statuses.push(response.status());
  });
  return counts;
}

/**
 * Starts watching for the page's sign-out notice; the returned function waits for
 * it and answers when it was shown, on the page's clock. Timing in the page leaves
 * out the test driver's own latency, which a loaded CI machine makes long.
 */
export async function watchNotice(page: Page): Promise<() => Promise<number>> {
  await page.evaluate(() => {
    const notice = document.getElementById('notice')!;
    const g = globalThis as { noticeShownAt?: number };
    g.noticeShownAt = undefined;
    new MutationObserver(() => {
      if (!notice.hidden) g.noticeShownAt ??= Date.now();
    }).observe(notice, { attributes: true });
  });
  return async () => {
    await page.waitForSelector('#notice:not([hidden])', { timeout: 5000 });
    return page.evaluate(() => (globalThis as { noticeShownAt?: number }).noticeShownAt!);
  };
}

/** Clicks `selector` from inside the page; answers the page's time of the click. */
export function clickInPage(page: Page, selector: string): Promise<number> {
  return page.evaluate((s) => {
    const element = document.querySelector<HTMLElement>(s);
    if (!element) throw new Error(`no ${s} on the page`);
    const at = Date.now();
    element.click();
    return at;
  }, selector);
}
