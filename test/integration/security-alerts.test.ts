// Each security alert with its threshold, on real redis-server and nats-server
// and a ManualClock: the event arrives on sa.v1.security.<type> (read from the
// SA_SECURITY stream, as alerting does: a subject subscriber could also see the
// duplicates that relays may publish and JetStream drops) with what it
// counted, once per window, and the alert's metric counts it.
import { fromBinary } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { STREAMS } from '../../src/events/subjects.js';
import { SecurityEventSchema, SecurityEventType, type SecurityEvent } from '../../src/gen/sessionauthority/v1/events_pb.js';
import { ManualClock } from '../../src/shared/clock.js';
import { apiKey, createSession, sleep, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { metricValue, scrape } from '../support/metrics.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { until } from '../support/sidecars.js';

const SEC = 1000;
const MIN = 60 * SEC;
let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
let nc: NatsConnection;
const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
const received: { subject: string; event: SecurityEvent }[] = [];

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  auth = await startTestAuthority({
    redisUrl: redis.url,
    clock,
    env: {
      NATS_URL: nats.url,
      SA_ACTIVE_SESSIONS_INTERVAL: '0',
      SA_ALERT_REFRESH_RATE: '3',
      SA_ALERT_REFRESH_RATE_WINDOW: '1m',
      SA_ALERT_KNOWN_DEVICES: '2',
      SA_ALERT_DEVICE_MEMORY: '1h',
      SA_ALERT_MASS_LOGOUT: '3',
      SA_ALERT_MASS_LOGOUT_WINDOW: '1m',
      SA_ALERT_STORE_ERRORS: '2',
      SA_ALERT_STORE_ERRORS_WINDOW: '1m',
    },
  });
  // The relay is connected and the streams exist once an event went through.
  const warmup = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('warmup') });
  await auth.grpc.revoke({ target: { case: 'sessionId', value: warmup.sid }, reason: RevocationReason.OTHER }, apiKey(auth.keys.admin));
  await until(() => auth.authority.relay!.published > 0, 10_000, 'relay published');
  nc = await connect({ servers: nats.url });
  const consumer = await jetstream(nc).consumers.get(STREAMS.security.name, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume();
  void (async () => {
    for await (const m of messages) received.push({ subject: m.subject, event: fromBinary(SecurityEventSchema, m.data) });
  })();
});

afterAll(async () => {
  await nc?.close();
  await auth?.stop();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

const eventsOf = (type: SecurityEventType, match: (e: SecurityEvent) => boolean = () => true) =>
  received.filter((r) => r.event.type === type && match(r.event)).map((r) => r.event);
const alertMetric = async (type: string) => metricValue(await scrape(auth.httpUrl), 'session_authority_security_events_total', { type });
/** Waits for the events to arrive, then a little longer to see that no more do. */
async function expectEvents(type: SecurityEventType, match: (e: SecurityEvent) => boolean, count: number): Promise<SecurityEvent[]> {
  await until(() => eventsOf(type, match).length >= count, 5000, `${SecurityEventType[type]} x${count}`);
  await sleep(150);
  const found = eventsOf(type, match);
  expect(found).toHaveLength(count);
  return found;
}

describe('security alerts', () => {
  it('REFRESH_RATE_EXCEEDED: the refresh past SA_ALERT_REFRESH_RATE within the window, once per window', async () => {
    const userId = uniqueUser('rate');
    const s = await createSession(auth.grpc, auth.keys.admin, { userId });
    let token = s.refresh;
    const refreshTimes: number[] = [];
    const refresh = async (n: number) => {
      for (let i = 0; i < n; i++) {
        clock.advance(SEC);
        refreshTimes.push(clock.now());
        token = (await auth.grpc.refresh({ refreshToken: token })).tokens!.refreshToken;
      }
    };
    await refresh(3);
    await sleep(150);
    expect(eventsOf(SecurityEventType.REFRESH_RATE_EXCEEDED, (e) => e.sessionId === s.sid)).toEqual([]);
    await refresh(3); // the 4th is over the limit of 3; the 5th and 6th are in the same window
    const [first] = await expectEvents(SecurityEventType.REFRESH_RATE_EXCEEDED, (e) => e.sessionId === s.sid, 1);
    expect(first).toMatchObject({ userId, sessionId: s.sid, count: 4, detail: 'session refreshed 4 times within 1m' });
    expect(timestampMs(first!.at!)).toBe(refreshTimes[3]);
    expect(received.find((r) => r.event === first)!.subject).toBe('sa.v1.security.refresh_rate_exceeded');
    expect(await alertMetric('refresh_rate_exceeded')).toBe(1);

    // The window began at the first refresh; a minute later counting starts over.
    clock.set(refreshTimes[0]! + MIN);
    await refresh(4);
    await expectEvents(SecurityEventType.REFRESH_RATE_EXCEEDED, (e) => e.sessionId === s.sid, 2);
    expect(await alertMetric('refresh_rate_exceeded')).toBe(2);
  });

  it('NEW_DEVICE_LOGIN: a device id or address not among the last SA_ALERT_KNOWN_DEVICES seen for the user', async () => {
    const userId = uniqueUser('device');
    const login = (deviceId: string, ip: string) => {
      clock.advance(SEC);
      return createSession(auth.grpc, auth.keys.admin, { userId, deviceId, ip });
    };
    await login('laptop', '203.0.113.7'); // the first login on record: a baseline
    await login('laptop', '203.0.113.7');
    const phone = await login('phone', '203.0.113.7');
    const away = await login('phone', '198.51.100.4');
    const tablet = await login('tablet', '2001:db8::1'); // both new; the laptop and 203.0.113.7 drop out (2 kept)
    const back = await login('laptop', '203.0.113.7'); // forgotten, so new again
    const events = await expectEvents(SecurityEventType.NEW_DEVICE_LOGIN, (e) => e.userId === userId, 4);
    expect(events.map((e) => ({ sid: e.sessionId, deviceId: e.deviceId, ip: e.ipAddress, detail: e.detail }))).toEqual([
      { sid: phone.sid, deviceId: 'phone', ip: '', detail: 'login from a new device "phone"' },
      { sid: away.sid, deviceId: '', ip: '198.51.100.4', detail: 'login from a new IP address 198.51.100.4' },
      { sid: tablet.sid, deviceId: 'tablet', ip: '2001:db8::1', detail: 'login from a new device "tablet" and a new IP address 2001:db8::1' },
      { sid: back.sid, deviceId: 'laptop', ip: '203.0.113.7', detail: 'login from a new device "laptop" and a new IP address 203.0.113.7' },
    ]);
    expect(await alertMetric('new_device_login')).toBe(4);
  });

  it('MASS_LOGOUT: more than SA_ALERT_MASS_LOGOUT sessions ended within the window, once per window', async () => {
    clock.advance(2 * MIN); // a window of its own
    const admin = apiKey(auth.keys.admin);
    const users = [uniqueUser('mass'), uniqueUser('mass'), uniqueUser('mass')];
    for (const userId of users) for (let i = 0; i < 2; i++) await createSession(auth.grpc, auth.keys.admin, { userId });
    const endAll = async (userId: string) =>
      (await auth.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.ACCOUNT_LOCKED }, admin)).sessionsEnded;

    expect(await endAll(users[0]!)).toBe(2);
    await sleep(150);
    expect(eventsOf(SecurityEventType.MASS_LOGOUT)).toEqual([]);
    clock.advance(10 * SEC);
    const alarmAt = clock.now();
    expect(await endAll(users[1]!)).toBe(2); // 4 within a minute: over 3
    clock.advance(10 * SEC);
    expect(await endAll(users[2]!)).toBe(2); // still the same window: quiet
    const [event] = await expectEvents(SecurityEventType.MASS_LOGOUT, () => true, 1);
    expect(event).toMatchObject({ userId: '', sessionId: '', count: 4, detail: '4 sessions ended within 1m on one authority replica' });
    expect(timestampMs(event!.at!)).toBe(alarmAt);
    expect(await alertMetric('mass_logout')).toBe(1);

    clock.advance(MIN);
    const more = [uniqueUser('mass'), uniqueUser('mass')];
    for (const userId of more) for (let i = 0; i < 2; i++) await createSession(auth.grpc, auth.keys.admin, { userId });
    for (const userId of more) await endAll(userId);
    await expectEvents(SecurityEventType.MASS_LOGOUT, () => true, 2);
    expect(await alertMetric('mass_logout')).toBe(2);
  });

  it('STORE_ERRORS: more than SA_ALERT_STORE_ERRORS store failures within the window, published while the store is down', async () => {
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('store') });
    const before = metricValue(await scrape(auth.httpUrl), 'session_authority_store_errors_total')!;
    expect(before).toBe(0);
    await redis.kill();
    try {
      const failures = await Promise.all([1, 2, 3].map(() => auth.grpc.validateToken({ accessToken: s.access }).then(() => 'ok', () => 'failed')));
      expect(failures).toEqual(['failed', 'failed', 'failed']);
      const [event] = await expectEvents(SecurityEventType.STORE_ERRORS, () => true, 1);
      expect(event).toMatchObject({ userId: '', count: 3, detail: '3 session store errors within 1m on one authority replica' });
      const text = await scrape(auth.httpUrl);
      expect(metricValue(text, 'session_authority_store_errors_total')).toBeGreaterThanOrEqual(3);
      expect(metricValue(text, 'session_authority_security_events_total', { type: 'store_errors' })).toBe(1);
      expect(metricValue(text, 'session_authority_rpc_duration_seconds_count', { method: 'ValidateToken', code: 'UNAVAILABLE' })).toBe(3);
    } finally {
      await redis.restart();
    }
  });
});
