// The client SDK in a real headless Chromium against a real authority (embedded
// store), through the demo page `npm start` serves: live logout across browsers,
// a reload resumed by the cookie, no token in any page-readable storage, one
// refresh for many calls with an expired token and for two tabs at once, the
// demo's own flow, and the expiry warning of a short session.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Browser, BrowserContext } from 'playwright-core';
import { SessionService } from '../../src/authority/session-service.js';
import type { Clock } from '../../src/shared/clock.js';
import { launchChromium } from '../support/chromium.js';
import {
  accessTokenOn, clickInPage, countRequests, devicesOn, openDemo, sessionIdOn, signIn, startDemoAuthority, watchNotice,
} from '../support/demo-page.js';
import { apiKey, uniqueUser, type TestAuthority } from '../support/authority.js';

/** Real time plus an offset the test can move forward: the authority's clock. */
class ShiftedClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

const USER_REQUEST_OWN = 'You were signed out, as requested from one of your devices.';

// Generous: a browser's first pages are slow on a loaded 2-core machine; the timings that matter are asserted.
describe('session authority in a headless Chromium', { timeout: 60_000 }, () => {
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const authorities: TestAuthority[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close()));
    await Promise.all(authorities.splice(0).map((t) => t.stop()));
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function authority(options: Parameters<typeof startDemoAuthority>[0] = {}) {
    const t = await startDemoAuthority(options);
    authorities.push(t);
    return { t, url: t.demoUrl, refreshes: vi.spyOn(t.authority.sessions, 'refresh') };
  }
  async function context(): Promise<BrowserContext> {
    const c = await browser.newContext();
    contexts.push(c);
    return c;
  }
  const liveSessions = async (t: TestAuthority, userId: string) =>
    (await t.connect.listSessions({ userId }, apiKey(t.keys.reader))).sessions.map((s) => s.sessionId).sort();

  it('logout everywhere in one browser signs the other browser (both its tabs) out at once, with the reason', async () => {
    const { t, url } = await authority();
    const user = uniqueUser('dana');
    const a = await openDemo(await context(), url);
    const bContext = await context();
    const b = await openDemo(bContext, url);
    await signIn(a, user, { deviceName: 'Laptop' });
    await signIn(b, user, { deviceName: 'Phone' });
    const b2 = await openDemo(bContext, url); // a second tab: the same session, through the cookie
    await b2.waitForSelector('#signed-in:not([hidden])');
    expect(await liveSessions(t, `demo-${user}`)).toHaveLength(2);

    const shown = await Promise.all([b, b2].map(watchNotice));
    const clicked = await clickInPage(a, '#logout-all');
    for (const at of await Promise.all(shown.map((s) => s()))) expect(at - clicked).toBeLessThan(1000);
    for (const tab of [b, b2]) {
      expect(await tab.textContent('#notice')).toBe(USER_REQUEST_OWN);
      expect(await tab.getAttribute('#notice', 'data-reason')).toBe('revoked');
      expect(await tab.isVisible('#signed-out')).toBe(true);
    }
    expect(await a.textContent('#notice')).toBe('You signed out.');
    expect(await a.isVisible('#signed-out')).toBe(true);
    expect(await liveSessions(t, `demo-${user}`)).toEqual([]);
    // Both cookies are gone or dead: a reload stays signed out.
    await b.reload();
    await b.waitForSelector('#signed-out:not([hidden])');
  });

  it('ending all other devices signs them out; this browser keeps its session and its cookie still refreshes', async () => {
    const { t, url, refreshes } = await authority();
    const user = uniqueUser('eli');
    const a = await openDemo(await context(), url);
    const b = await openDemo(await context(), url);
    const sidA = await signIn(a, user, { deviceName: 'Desk' });
    await signIn(b, user, { deviceName: 'Tablet' });

    const shown = await watchNotice(b);
    const clicked = await clickInPage(a, '#end-others');
    expect((await shown()) - clicked).toBeLessThan(1000);
    expect(await b.textContent('#notice')).toBe(USER_REQUEST_OWN);
    await a.waitForFunction(() => document.querySelectorAll('#devices li').length === 1);
    expect(await liveSessions(t, `demo-${user}`)).toEqual([sidA]);

    const before = await accessTokenOn(a);
    refreshes.mockClear();
    await a.click('#refresh-now');
    await expect.poll(() => accessTokenOn(a)).not.toBe(before);
    expect(refreshes).toHaveBeenCalledTimes(1);
    expect(await a.isHidden('#notice')).toBe(true);
    expect(await sessionIdOn(a)).toBe(sidA);
  });

  it('a reload keeps the session through the HttpOnly cookie: one refresh, same session', async () => {
    const { url, refreshes } = await authority();
    const ctx = await context();
    const refreshRequests = countRequests(ctx, '/auth/v1/refresh');
    const page = await openDemo(ctx, url);
    expect(refreshRequests.statuses).toEqual([401]); // the page tried to resume: no cookie yet
    const sid = await signIn(page, uniqueUser('erin'));
    const before = await accessTokenOn(page);

    await page.reload();
    await page.waitForSelector('#signed-in:not([hidden])');
    expect(await sessionIdOn(page)).toBe(sid);
    expect(refreshRequests.statuses).toEqual([401, 200]);
    expect(refreshes).toHaveBeenCalledTimes(1);
    expect(await accessTokenOn(page)).not.toBe(before);

    const [cookie, ...others] = await ctx.cookies();
    expect(others).toEqual([]);
    expect(cookie).toMatchObject({ name: '__Secure-sa-refresh', path: '/auth/v1', httpOnly: true, secure: true, sameSite: 'Strict' });
    expect(cookie!.value.startsWith(`${sid}.`)).toBe(true);
  });

  it('the access token is never in localStorage, sessionStorage, document.cookie or IndexedDB', async () => {
    const { url } = await authority();
    const ctx = await context();
    const page = await openDemo(ctx, url);
    await signIn(page, uniqueUser('fay'));
    await page.click('#call-api');
    await page.waitForSelector('#api-result:has-text("200")');
    const tokens = [await accessTokenOn(page)];
    await page.click('#refresh-now');
    await expect.poll(() => accessTokenOn(page)).not.toBe(tokens[0]);
    tokens.push(await accessTokenOn(page));
    await page.reload();
    await page.waitForSelector('#signed-in:not([hidden])');
    tokens.push(await accessTokenOn(page));
    expect(new Set(tokens).size).toBe(3);

    const readable = await page.evaluate(async () => {
      const dump = (s: Storage) => Object.fromEntries(Array.from({ length: s.length }, (_, i) => [s.key(i)!, s.getItem(s.key(i)!)]));
      return {
        local: JSON.stringify(dump(localStorage)),
        session: JSON.stringify(dump(sessionStorage)),
        cookie: document.cookie,
        indexedDb: JSON.stringify(await indexedDB.databases()),
      };
    });
    expect(readable).toEqual({ local: '{}', session: '{}', cookie: '', indexedDb: '[]' });
    for (const token of tokens) for (const place of Object.values(readable)) expect(place).not.toContain(token);
    // The refresh token is in the browser, but only as the HttpOnly cookie (document.cookie above is empty).
    expect((await ctx.cookies()).map((c) => [c.name, c.httpOnly])).toEqual([['__Secure-sa-refresh', true]]);
  });

  it('20 parallel API calls with an expired token: 20 refusals, exactly one refresh, 20 answers', async () => {
    const clock = new ShiftedClock();
    const { t, url, refreshes } = await authority({ clock });
    const ctx = await context();
    const page = await openDemo(ctx, url);
    const sid = await signIn(page, uniqueUser('gil'));
    const api = countRequests(ctx, '/demo/v1/me');
    const refreshRequests = countRequests(ctx, '/auth/v1/refresh');
    refreshes.mockClear();

    // The authority's time passes the token's expiry (plus the tolerated skew); the page's does not.
    clock.offsetMs = t.config.accessTokenTtlMs + t.config.clockSkewMs + 2000;
    const answers = await page.evaluate(() =>
      Promise.all(
        Array.from({ length: 20 }, async () => {
          const response: Response = await (globalThis as any).demo.client.fetch('/demo/v1/me');
          return { status: response.status, body: await response.json() };
        }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(new Set(answers.map((a) => a.body.sessionId))).toEqual(new Set([sid]));
    expect(refreshes).toHaveBeenCalledTimes(1);
    expect(refreshRequests.sent).toBe(1);
    expect(api.statuses.filter((s) => s === 401)).toHaveLength(20);
    expect(api.statuses.filter((s) => s === 200)).toHaveLength(20);
    expect(api.sent).toBe(40);
    expect(await page.isVisible('#signed-in')).toBe(true);
  });

  it('two tabs refreshing at once: one refresh, both tabs get the new token, nobody is signed out', async () => {
    const { t, url, refreshes } = await authority();
    const ctx = await context();
    const tab1 = await openDemo(ctx, url);
    const sid = await signIn(tab1, uniqueUser('hal'));
    const tab2 = await openDemo(ctx, url); // resumes the same session through the shared cookie
    expect(await sessionIdOn(tab2)).toBe(sid);
    // tab2's refresh reached tab1 over the BroadcastChannel.
    const old = await accessTokenOn(tab2);
    await expect.poll(() => accessTokenOn(tab1)).toBe(old);

    // A slow authority, so the two refreshes surely overlap.
    const sessions = t.authority.sessions;
    refreshes.mockReset().mockImplementation(async (token: string) => {
      await new Promise((r) => setTimeout(r, 300));
      return SessionService.prototype.refresh.call(sessions, token);
    });
    const at = Date.now() + 300;
    const refreshAt = (when: number) =>
      new Promise((r) => setTimeout(r, when - Date.now())).then(async () => ((await (globalThis as any).demo.client.refresh()).sessionId as string));
    const refreshed = await Promise.all([tab1.evaluate(refreshAt, at), tab2.evaluate(refreshAt, at)]);

    expect(refreshed).toEqual([sid, sid]);
    expect(refreshes).toHaveBeenCalledTimes(1);
    const [token1, token2] = [await accessTokenOn(tab1), await accessTokenOn(tab2)];
    expect(token1).not.toBe(old);
    expect(token2).toBe(token1);
    for (const tab of [tab1, tab2]) {
      expect(await tab.isVisible('#signed-in')).toBe(true);
      expect(await tab.isHidden('#notice')).toBe(true);
    }
    expect((await t.connect.validateToken({ accessToken: token1 })).valid).toBe(true);
    expect(await liveSessions(t, (await t.connect.validateToken({ accessToken: token1 })).principal!.userId)).toEqual([sid]);
  });

  it('the demo: two browsers as one user see two devices; one ends the other, which shows the notice within 1 s', async () => {
    const { t, url } = await authority();
    const name = uniqueUser('Carol');
    const a = await openDemo(await context(), url);
    const b = await openDemo(await context(), url);
    const sidA = await signIn(a, name, { deviceName: 'Window A' });
    const sidB = await signIn(b, name.toLowerCase(), { deviceName: 'Window B' }); // usernames are case-insensitive
    await a.click('#reload-devices');
    await a.waitForFunction(() => document.querySelectorAll('#devices li').length === 2);
    await b.waitForFunction(() => document.querySelectorAll('#devices li').length === 2);
    const sorted = (list: Awaited<ReturnType<typeof devicesOn>>) => [...list].sort((x, y) => x.name.localeCompare(y.name));
    expect(sorted(await devicesOn(a))).toEqual([
      { sessionId: sidA, name: 'Window A', current: true },
      { sessionId: sidB, name: 'Window B', current: false },
    ]);
    expect(sorted(await devicesOn(b))).toEqual([
      { sessionId: sidA, name: 'Window A', current: false },
      { sessionId: sidB, name: 'Window B', current: true },
    ]);

    const shown = await watchNotice(b);
    const clicked = await clickInPage(a, `#devices li[data-session-id="${sidB}"] button.end-device`);
    expect((await shown()) - clicked).toBeLessThan(1000);
    expect(await b.textContent('#notice')).toBe(USER_REQUEST_OWN);
    expect(await b.isVisible('#signed-out')).toBe(true);
    // A stays signed in, and its list (reloaded after the end, and told by WatchSession) has only itself.
    await a.waitForFunction(() => document.querySelectorAll('#devices li').length === 1);
    expect(await devicesOn(a)).toEqual([{ sessionId: sidA, name: 'Window A', current: true }]);
    expect(await a.isHidden('#notice')).toBe(true);
    expect(await liveSessions(t, `demo-${name.toLowerCase()}`)).toEqual([sidA]);
  });

  it('a short session: the expiry warning shows a minute before the end, then the page is signed out', async () => {
    const { url } = await authority();
    const ctx = await context();
    await ctx.clock.install();
    const page = await openDemo(ctx, url);
    await signIn(page, uniqueUser('ivy'), { shortSession: true });
    const session = await page.evaluate(() => (globalThis as any).demo.client.session);
    expect(session.sessionExpiresAt - Date.now()).toBeGreaterThan(110_000);
    expect(session.sessionExpiresAt - Date.now()).toBeLessThanOrEqual(120_000);
    expect(await page.isHidden('#expiry-warning')).toBe(true);

    await ctx.clock.fastForward(45_000);
    expect(await page.isHidden('#expiry-warning')).toBe(true);
    await ctx.clock.fastForward(20_000);
    await page.waitForSelector('#expiry-warning:not([hidden])');
    expect(await page.textContent('#expiry-warning')).toMatch(/^Your session ends in 5\d s\. /);
    expect(await page.isVisible('#signed-in')).toBe(true);

    await ctx.clock.fastForward(60_000);
    await page.waitForSelector('#notice:not([hidden])');
    expect(await page.getAttribute('#notice', 'data-reason')).toBe('expired');
    expect(await page.textContent('#notice')).toBe('Your session has expired. Please sign in again.');
    expect(await page.isHidden('#expiry-warning')).toBe(true);
  });
});
