// Two browsers on two authority replicas sharing one Redis and one NATS: a
// device ended on one replica is signed out at once on the other, whose
// WatchSession hears it over NATS; both see the same device list.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../support/chromium.js';
import { clickInPage, devicesOn, openDemo, signIn, startDemoAuthority, watchNotice } from '../support/demo-page.js';
import { RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { apiKey, createSession, uniqueUser, type TestAuthority } from '../support/authority.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { watchWith } from '../support/watch.js';

let browser: Browser;
let redis: RedisProcess;
let nats: NatsProcess;
let one: TestAuthority & { demoUrl: string };
let two: TestAuthority & { demoUrl: string };

beforeAll(async () => {
  [browser, redis, nats] = await Promise.all([launchChromium(), startRedis(), startNats()]);
  const options = { redisUrl: redis.url, env: { NATS_URL: nats.url } };
  [one, two] = await Promise.all([startDemoAuthority(options), startDemoAuthority(options)]);
  await Promise.all([one.authority.sessionEnds.ready(), two.authority.sessionEnds.ready()]);
  // Warm-up: one's relay has connected and made its streams once an end reaches two.
  const s = await createSession(one.connect, one.keys.admin, { userId: uniqueUser('warm') });
  const watcher = watchWith(two.connect, s.access);
  await watcher.next('started');
  await one.connect.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.OTHER }, apiKey(one.keys.admin));
  await watcher.next('ended', 15_000);
});
afterAll(async () => {
  await browser?.close();
  await Promise.all([one?.stop(), two?.stop()]);
  await Promise.all([redis?.stop(), nats?.stop()]);
});

it('a device ended through replica one shows the force-logout notice on replica two within 1 s', async () => {
  const name = uniqueUser('kim');
  const a = await openDemo(await browser.newContext(), one.demoUrl);
  const b = await openDemo(await browser.newContext(), two.demoUrl);
  const sidA = await signIn(a, name, { deviceName: 'On replica one' });
  const sidB = await signIn(b, name, { deviceName: 'On replica two' });
  await a.click('#reload-devices');
  await a.waitForFunction(() => document.querySelectorAll('#devices li').length === 2);
  expect((await devicesOn(a)).map((d) => [d.sessionId, d.current]).sort()).toEqual([[sidA, true], [sidB, false]].sort());

  const shown = await watchNotice(b);
  const clicked = await clickInPage(a, `#devices li[data-session-id="${sidB}"] button.end-device`);
  expect((await shown()) - clicked).toBeLessThan(1000);
  expect(await b.textContent('#notice')).toBe('You were signed out, as requested from one of your devices.');
  expect(await b.isVisible('#signed-out')).toBe(true);
  expect(await a.isVisible('#signed-in')).toBe(true);
  await Promise.all([a.context().close(), b.context().close()]);
}, 60_000);
