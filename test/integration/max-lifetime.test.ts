// CreateSession's max_lifetime: a login service may shorten a session's absolute
// lifetime ("public computer" sign-ins), never lengthen it. Driven by a ManualClock,
// on a real redis-server and on the memory store.
import { Code } from '@connectrpc/connect';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenDelivery } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { ManualClock } from '../../src/shared/clock.js';
import { apiKey, decodeJwt, expectRpcError, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { httpCall } from '../support/http-call.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { watchWith } from '../support/watch.js';

const SEC = 1000;
const MIN = 60 * SEC;

describe.each(['redis', 'memory'] as const)('CreateSession max_lifetime (%s store)', (storeKind) => {
  let redis: RedisProcess | undefined;
  let t: TestAuthority;
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000 + 250);

  beforeAll(async () => {
    if (storeKind === 'redis') redis = await startRedis();
    t = await startTestAuthority({
      redisUrl: redis?.url,
      clock,
      env: { SA_ACCESS_TOKEN_TTL: '15m', SA_SESSION_IDLE_TIMEOUT: '30m', SA_SESSION_ABSOLUTE_LIFETIME: '1h' },
    });
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  const create = (userId: string, maxLifetime: { seconds: bigint; nanos?: number } | undefined, delivery = TokenDelivery.DIRECT) =>
    t.grpc.createSession({ userId, device: { id: 'kiosk', name: 'Library kiosk' }, maxLifetime, delivery }, apiKey(t.keys.login));
  const listOf = async (userId: string) => (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions;

  it('a 2-minute session ends after 2 minutes: tokens, refresh deadline, device list and the watch all say so', async () => {
    const userId = uniqueUser('kiosk');
    const now = clock.now();
    const created = await create(userId, { seconds: 120n });
    expect(timestampMs(created.sessionExpiresAt!)).toBe(now + 2 * MIN);
    const tokens = created.tokens!;
    // The access token (15 min by configuration) and the refresh deadline (30 min idle) stop at the session's end.
    expect(decodeJwt(tokens.accessToken).payload.exp).toBe(Math.floor((now + 2 * MIN) / 1000));
    expect(timestampMs(tokens.refreshTokenExpiresAt!)).toBe(now + 2 * MIN);
    const [listed] = await listOf(userId);
    expect(timestampMs(listed!.absoluteExpiresAt!)).toBe(now + 2 * MIN);
    expect(timestampMs(listed!.expiresAt!)).toBe(now + 2 * MIN);
    const watcher = watchWith(t.connect, tokens.accessToken);
    const started = await watcher.next('started');
    expect(timestampMs(started.value.sessionExpiresAt!)).toBe(now + 2 * MIN);
    watcher.cancel();

    clock.advance(MIN);
    const refreshed = await t.grpc.refresh({ refreshToken: tokens.refreshToken });
    expect(timestampMs(refreshed.sessionExpiresAt!)).toBe(now + 2 * MIN); // rotation never extends it
    expect(timestampMs(refreshed.tokens!.refreshTokenExpiresAt!)).toBe(now + 2 * MIN);

    clock.advance(MIN);
    await expectRpcError(t.grpc.refresh({ refreshToken: refreshed.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    expect(await listOf(userId)).toEqual([]);
  });

  it('never lengthens: a longer max_lifetime gets the configured lifetime', async () => {
    const now = clock.now();
    const created = await create(uniqueUser('long'), { seconds: 2n * 3600n });
    expect(timestampMs(created.sessionExpiresAt!)).toBe(now + 60 * MIN);
    const huge = await create(uniqueUser('huge'), { seconds: 315_576_000_000n });
    expect(timestampMs(huge.sessionExpiresAt!)).toBe(now + 60 * MIN);
  });

  it('unset: the configured lifetime; fractions of a second count', async () => {
    const now = clock.now();
    expect(timestampMs((await create(uniqueUser('unset'), undefined)).sessionExpiresAt!)).toBe(now + 60 * MIN);
    expect(timestampMs((await create(uniqueUser('frac'), { seconds: 90n, nanos: 500_000_000 })).sessionExpiresAt!)).toBe(now + 90_500);
  });

  it('with the browser handoff the shortened session is what the browser collects', async () => {
    const now = clock.now();
    const created = await create(uniqueUser('handoff'), { seconds: 300n }, TokenDelivery.BROWSER_HANDOFF);
    expect(timestampMs(created.sessionExpiresAt!)).toBe(now + 5 * MIN);
    const grant = await httpCall(`${t.httpUrl}/auth/v1/session`, {
      headers: { 'content-type': 'application/json', 'sa-csrf': '1' },
      body: JSON.stringify({ handoffCode: created.handoffCode }),
    });
    expect(grant.status).toBe(200);
    expect(grant.json).toMatchObject({ sessionExpiresAt: now + 5 * MIN, refreshExpiresAt: now + 5 * MIN, accessTokenExpiresAt: Math.floor((now + 5 * MIN) / 1000) * 1000 });
    expect(grant.cookies[0]).toMatch(/Max-Age=300;?/);
  });

  it.each([
    ['shorter than 60 s', { seconds: 59n, nanos: 999_999_999 }, 'max_lifetime must be at least 60s'],
    ['zero', { seconds: 0n }, 'max_lifetime must be at least 60s'],
    ['negative', { seconds: -120n }, 'max_lifetime is not a valid non-negative duration'],
    ['negative nanos', { seconds: 120n, nanos: -1 }, 'max_lifetime is not a valid non-negative duration'],
    ['nanos out of range', { seconds: 120n, nanos: 1_000_000_000 }, 'max_lifetime is not a valid non-negative duration'],
  ])('refuses a max_lifetime that is %s (INVALID_ARGUMENT) and creates nothing', async (_name, maxLifetime, message) => {
    const userId = uniqueUser('bad');
    const error = await expectRpcError(create(userId, maxLifetime), Code.InvalidArgument, 'invalid_argument');
    expect(error.rawMessage).toBe(message);
    expect(await listOf(userId)).toEqual([]);
  });
});
