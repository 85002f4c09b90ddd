// Live logout: WatchSession across two authorities on one Redis and one NATS,
// on every transport, and on the embedded store without NATS.
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpcJs from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogoutScope, RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { ManualClock } from '../../src/shared/clock.js';
import {
  apiKey, bearer, createSession, newGrpcJsClient, startTestAuthority, uniqueUser, type TestAuthority,
} from '../support/authority.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { watchWith, watchWithGrpcJs, type Watcher } from '../support/watch.js';

function expectClosedWith(error: unknown, code: Code, domainCode?: string): void {
  expect(error).toBeInstanceOf(ConnectError);
  const ce = error as ConnectError;
  expect({ code: Code[ce.code], message: ce.rawMessage }).toMatchObject({ code: Code[code] });
  if (domainCode) expect(ce.metadata.get('sa-error-code')).toBe(domainCode);
}

describe('across two authorities (Redis + NATS)', () => {
  let redis: RedisProcess;
  let nats: NatsProcess;
  let a: TestAuthority;
  let b: TestAuthority;
  const grpcJsClients: grpcJs.Client[] = [];
  const watchers: Watcher[] = [];
  const watch = (w: Watcher) => (watchers.push(w), w);

  beforeAll(async () => {
    [redis, nats] = await Promise.all([startRedis(), startNats()]);
    const env = { NATS_URL: nats.url };
    [a, b] = await Promise.all([startTestAuthority({ redisUrl: redis.url, env }), startTestAuthority({ redisUrl: redis.url, env })]);
    await Promise.all([a.authority.sessionEnds.ready(), b.authority.sessionEnds.ready()]);
    // Warm-up: A's relay has connected and made its streams once an end reaches B.
    const s = await createSession(a.connect, a.keys.admin, { userId: uniqueUser('warm') });
    const w = watchWith(b.connect, s.access);
    await w.next('started');
    const deadline = Date.now() + 15_000;
    await a.connect.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.OTHER }, apiKey(a.keys.admin));
    await w.next('ended', deadline - Date.now());
  });
  afterAll(async () => {
    for (const w of watchers) w.cancel();
    for (const c of grpcJsClients) c.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all([redis?.stop(), nats?.stop()]);
  });

  it('a session revoked on A: its watcher on B (Connect over HTTP/1.1) hears why within 1 s, then the stream ends OK', async () => {
    const userId = uniqueUser('live');
    const s = await createSession(a.connect, a.keys.admin, { userId });
    const other = await createSession(a.connect, a.keys.admin, { userId, deviceId: 'phone' });
    const w = watch(watchWith(b.connect, s.access));
    const started = await w.next('started');
    expect(started.value.sessionId).toBe(s.sid);
    expect(started.value.sessionExpiresAt).toEqual(s.res.sessionExpiresAt);
    const o = watch(watchWith(b.grpc, other.access));
    await o.next('started');

    const t0 = Date.now();
    await a.connect.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.PASSWORD_CHANGED }, apiKey(a.keys.revoker));
    const ended = await w.next('ended', 1000);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(ended.value).toMatchObject({
      sessionId: s.sid, reason: RevocationReason.PASSWORD_CHANGED, allSessions: false,
      message: 'You were signed out because your password was changed.',
    });
    expect(Math.abs(Number(ended.value.endedAt!.seconds) * 1000 - t0)).toBeLessThan(2000);
    expect(await w.closed).toBeUndefined();
    expect(w.messages.map((m) => m.event.case)).toEqual(['started', 'ended']);

    // the user's other device hears of it and stays watched
    const gone = await o.next('otherSessionEnded', 1000);
    expect(gone.value).toMatchObject({ sessionId: s.sid, reason: RevocationReason.PASSWORD_CHANGED, allSessions: false });
    expect(gone.value.message).toBe('One of your other sessions was signed out because your password was changed.');
    expect(o.isClosed()).toBe(false);
  });

  it('a user revoked on A: every watcher of the user, on both authorities and every transport, gets all_sessions', async () => {
    const userId = uniqueUser('global');
    const sessions = await Promise.all(['d1', 'd2', 'd3'].map((deviceId) => createSession(a.connect, a.keys.admin, { userId, deviceId })));
    const bystander = await createSession(a.connect, a.keys.admin, { userId: uniqueUser('bystander') });
    const c = newGrpcJsClient(b.grpcAddress);
    grpcJsClients.push(c);
    const ws = [
      watch(watchWith(a.connect, sessions[0]!.access)),
      watch(watchWith(b.grpc, sessions[1]!.access)),
      watch(watchWithGrpcJs(c, sessions[2]!.access)),
    ];
    const by = watch(watchWith(b.connect, bystander.access));
    await Promise.all([...ws, by].map((w) => w.next('started')));

    const t0 = Date.now();
    await a.connect.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.ACCOUNT_LOCKED }, apiKey(a.keys.admin));
    const ended = await Promise.all(ws.map((w) => w.next('ended', 1000)));
    expect(Date.now() - t0).toBeLessThan(1000);
    ended.forEach((e, i) => expect(e.value).toMatchObject({
      sessionId: sessions[i]!.sid, reason: RevocationReason.ACCOUNT_LOCKED, allSessions: true,
      message: 'You were signed out because your account was locked.',
    }));
    expect(await Promise.all(ws.map((w) => w.closed))).toEqual([undefined, undefined, undefined]);
    expect(by.messages.map((m) => m.event.case)).toEqual(['started']);

    // A sign-in after the global logout is not ended by it.
    const fresh = await createSession(b.connect, b.keys.admin, { userId });
    const f = watch(watchWith(a.connect, fresh.access));
    await f.next('started');
    expect(f.isClosed()).toBe(false);
  });

  it('Logout OTHERS on A: the others end (user_request), the current one hears other_session_ended for each and stays', async () => {
    const userId = uniqueUser('others');
    const [current, o1, o2] = await Promise.all(['laptop', 'phone', 'tablet'].map((deviceId) => createSession(a.connect, a.keys.admin, { userId, deviceId })));
    const wc = watch(watchWith(b.connect, current!.access));
    const w1 = watch(watchWith(b.grpc, o1!.access));
    const w2 = watch(watchWith(a.grpc, o2!.access));
    await Promise.all([wc, w1, w2].map((w) => w.next('started')));

    const res = await a.connect.logout({ scope: LogoutScope.OTHERS }, bearer(current!.access));
    expect(res.sessionsEnded).toBe(2);
    for (const [w, s] of [[w1, o1], [w2, o2]] as const) {
      expect((await w.next('ended', 1000)).value).toMatchObject({ sessionId: s!.sid, reason: RevocationReason.USER_REQUEST, allSessions: false });
      expect(await w.closed).toBeUndefined();
    }
    const heard = [(await wc.next('otherSessionEnded', 1000)).value.sessionId, (await wc.next('otherSessionEnded', 1000)).value.sessionId];
    expect(heard.sort()).toEqual([o1!.sid, o2!.sid].sort());
    expect(wc.isClosed()).toBe(false);
    // Device management from the same page: the list now shows only this session.
    const list = await b.connect.listSessions({}, bearer(current!.access));
    expect(list.sessions.map((s) => [s.sessionId, s.current])).toEqual([[current!.sid, true]]);

    // Ending one named other session works the same way.
    const o3 = await createSession(a.connect, a.keys.admin, { userId, deviceId: 'tv' });
    const w3 = watch(watchWith(b.connect, o3.access));
    await w3.next('started');
    await b.connect.logout({ scope: LogoutScope.SESSION, sessionId: o3.sid }, bearer(current!.access));
    expect((await w3.next('ended', 1000)).value.sessionId).toBe(o3.sid);
    expect((await wc.next('otherSessionEnded', 1000)).value.sessionId).toBe(o3.sid);
  });

  it('a session that already ended gets SessionEnded at once, with the recorded reason', async () => {
    const s = await createSession(a.connect, a.keys.admin, { userId: uniqueUser('late') });
    await a.connect.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.SECURITY_RISK }, apiKey(a.keys.admin));
    const w = watch(watchWith(b.connect, s.access));
    const ended = await w.next('ended', 1000);
    expect(ended.value).toMatchObject({ sessionId: s.sid, reason: RevocationReason.SECURITY_RISK, allSessions: false });
    expect(ended.value.message).toBe('You were signed out to protect your account from a security risk.');
    expect(await w.closed).toBeUndefined();
    expect(w.messages).toHaveLength(1);
  });

  it('a grpc-js client on the gRPC port: a bad token is UNAUTHENTICATED with sa-error-code', async () => {
    const c = newGrpcJsClient(a.grpcAddress);
    grpcJsClients.push(c);
    const w = watch(watchWithGrpcJs(c, 'not-a-token'));
    const error = (await w.closed) as grpcJs.ServiceError;
    expect(error.code).toBe(grpcJs.status.UNAUTHENTICATED);
    expect(error.details).toBe('access token rejected: malformed');
    expect(error.metadata.get('sa-error-code')).toEqual(['unauthenticated']);
  });
});

describe('embedded store, no NATS', () => {
  let t: TestAuthority;
  const clock = new ManualClock();
  const watchers: Watcher[] = [];
  const watch = (w: Watcher) => (watchers.push(w), w);

  beforeAll(async () => {
    t = await startTestAuthority({ clock, env: { SA_WATCH_HEARTBEAT: '150ms', SA_WATCH_MAX_PER_USER: '3', SA_REFRESH_GRACE: '1s' } });
  });
  afterAll(async () => {
    for (const w of watchers) w.cancel();
    await t?.stop();
  });

  it('logout, refresh-token reuse and a global revoke reach the watchers through the in-process bus', async () => {
    const userId = uniqueUser('mem');
    const [s1, s2, s3] = await Promise.all(['a', 'b', 'c'].map((deviceId) => createSession(t.connect, t.keys.admin, { userId, deviceId })));
    const [w1, w2, w3] = [watch(watchWith(t.connect, s1!.access)), watch(watchWith(t.grpc, s2!.access)), watch(watchWith(t.connect, s3!.access))];
    await Promise.all([w1, w2, w3].map((w) => w.next('started')));

    await t.connect.logout({ scope: LogoutScope.CURRENT }, bearer(s1!.access));
    expect((await w1.next('ended')).value).toMatchObject({ sessionId: s1!.sid, reason: RevocationReason.USER_REQUEST });
    expect((await w2.next('otherSessionEnded')).value.sessionId).toBe(s1!.sid);

    // s2's refresh token comes back after the grace window: theft, the session ends
    await t.connect.refresh({ refreshToken: s2!.refresh });
    clock.advance(2000);
    await t.connect.refresh({ refreshToken: s2!.refresh }).catch(() => undefined);
    expect((await w2.next('ended')).value).toMatchObject({ sessionId: s2!.sid, reason: RevocationReason.REFRESH_TOKEN_REUSE });
    expect((await w3.next('otherSessionEnded')).value.sessionId).toBe(s1!.sid);
    expect((await w3.next('otherSessionEnded')).value.sessionId).toBe(s2!.sid);

    await t.connect.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.ADMIN_ACTION }, apiKey(t.keys.admin));
    expect((await w3.next('ended')).value).toMatchObject({ sessionId: s3!.sid, allSessions: true, message: 'You were signed out by an administrator.' });
    expect(await Promise.all([w1.closed, w2.closed, w3.closed])).toEqual([undefined, undefined, undefined]);
  });

  it('a session ended without a notice reaching the watcher (a NATS blip) ends its stream at the next heartbeat', async () => {
    const userId = uniqueUser('missed');
    const s = await createSession(t.connect, t.keys.admin, { userId });
    const w = watch(watchWith(t.connect, s.access));
    await w.next('started');
    // Straight in the store: no bus, no notice, as when the notice was lost in transit.
    await t.store.endSessions({
      userId, target: { kind: 'one', sid: s.sid }, reason: RevocationReason.SECURITY_RISK, now: clock.now(), coverUntil: clock.now() + 3_600_000, requireOwnership: false,
    });
    expect((await w.next('ended', 1000)).value).toMatchObject({ sessionId: s.sid, reason: RevocationReason.SECURITY_RISK });
    expect(await w.closed).toBeUndefined();
  });

  it('heartbeats while nothing happens', async () => {
    const s = await createSession(t.connect, t.keys.admin, { userId: uniqueUser('beat') });
    const w = watch(watchWith(t.connect, s.access));
    await w.next('started');
    const beat = await w.next('heartbeat', 1000);
    expect(Number(beat.value.at!.seconds)).toBe(Math.floor(clock.now() / 1000));
    await w.next('heartbeat', 1000);
  });

  it('refuses a missing, malformed or expired token (UNAUTHENTICATED) and a token revoked on its own', async () => {
    const s = await createSession(t.connect, t.keys.admin, { userId: uniqueUser('bad') });
    expectClosedWith(await watchWith(t.connect, undefined).closed, Code.Unauthenticated, 'unauthenticated');
    expectClosedWith(await watchWith(t.grpc, 'garbage').closed, Code.Unauthenticated, 'unauthenticated');
    await t.connect.revoke({ target: { case: 'accessToken', value: s.access }, reason: RevocationReason.OTHER }, apiKey(t.keys.admin));
    // the session lives on; only this token is dead, so the client should refresh
    expectClosedWith(await watchWith(t.connect, s.access).closed, Code.Unauthenticated, 'unauthenticated');

    const later = await createSession(t.connect, t.keys.admin, { userId: uniqueUser('expired') });
    clock.advance(16 * 60_000);
    const expired = await watchWith(t.connect, later.access).closed;
    expectClosedWith(expired, Code.Unauthenticated, 'unauthenticated');
    expect((expired as ConnectError).rawMessage).toBe('access token rejected: expired');
  });

  it('at most SA_WATCH_MAX_PER_USER streams per user; a closed one frees its place', async () => {
    const s = await createSession(t.connect, t.keys.admin, { userId: uniqueUser('limit') });
    const before = t.authority.watch.open;
    const open = [watch(watchWith(t.connect, s.access)), watch(watchWith(t.connect, s.access)), watch(watchWith(t.grpc, s.access))];
    await Promise.all(open.map((w) => w.next('started')));
    expectClosedWith(await watchWith(t.connect, s.access).closed, Code.ResourceExhausted, 'resource_exhausted');
    open[0]!.cancel();
    const deadline = Date.now() + 2000;
    for (;;) {
      const w = watch(watchWith(t.connect, s.access));
      const first = await Promise.race([w.next('started').then(() => 'started'), w.closed.then(() => 'refused')]);
      if (first === 'started') break;
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(t.authority.watch.open).toBe(before + 3);
  });

  it('stopping the authority ends open streams with UNAVAILABLE', async () => {
    const s = await createSession(t.connect, t.keys.admin, { userId: uniqueUser('stop') });
    const c = newGrpcJsClient(t.grpcAddress);
    const ws = [watch(watchWith(t.connect, s.access)), watch(watchWithGrpcJs(c, s.access))];
    await Promise.all(ws.map((w) => w.next('started')));
    for (const w of watchers) if (!ws.includes(w)) w.cancel();
    const started = Date.now();
    await t.stop();
    expect(Date.now() - started).toBeLessThan(1500);
    expectClosedWith(await ws[0]!.closed, Code.Unavailable, 'unavailable');
    const error = (await ws[1]!.closed) as grpcJs.ServiceError;
    expect([grpcJs.status[error.code], error.details]).toEqual(['UNAVAILABLE', 'the server is shutting down; reconnect']);
    c.close();
  });
});
