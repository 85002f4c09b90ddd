// Sidecars and signing keys: a rotation mid-session (new kid learnt from the
// sa.v1.keys event, or fetched for an unknown kid), a flood of made-up kids
// that must not turn into a flood of JWKS requests at the authority, and
// forged or mis-issued tokens refused with the right TokenInvalidReason.
import { createCipheriv, createHmac, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { calculateJwkThumbprint, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/shared/clock.js';
import type { StoredSigningKey } from '../../src/store/session-store.js';
import { createSession, decodeJwt, expectRpcError, startTestAuthority, TEST_KEK, uniqueUser, type TestAuthority } from '../support/authority.js';
import { ISSUER, newKeyPair, startLocalIssuer, type LocalIssuer } from '../support/local-issuer.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { servingStatus, startInProcessSidecar, until, verdictOf, type Sidecar } from '../support/sidecars.js';

let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
let local: LocalIssuer;
/** Sidecars on the authority's JWKS: default settings (as the CLI runs them). */
let plain: Sidecar[];
/** A sidecar whose unknown-kid refetch cooldown is 2 s instead of 10 s. */
let quick: Sidecar;
/** A sidecar trusting the local issuer's key (for tokens this test signs). */
let forged: Sidecar;
/** Signed with the authority's first key, which every sidecar knows. */
let firstKeyToken: string;
/** JWKS requests that reached the authority, per sidecar. */
const fetches = new Map<string, number>();

function counting(name: string): typeof globalThis.fetch {
  fetches.set(name, 0);
  return (input, init) => {
    fetches.set(name, fetches.get(name)! + 1);
    return globalThis.fetch(input, init);
  };
}

beforeAll(async () => {
  [redis, nats, local] = await Promise.all([startRedis(), startNats(), startLocalIssuer(systemClock)]);
  auth = await startTestAuthority({ redisUrl: redis.url, env: { NATS_URL: nats.url, SA_KEY_PUBLISH_DELAY: '0' } });
  const common = { authorityUrl: auth.httpUrl, natsUrl: nats.url };
  plain = await Promise.all(['plain-1', 'plain-2'].map((name) => startInProcessSidecar({ name, ...common, fetch: counting(name) })));
  quick = await startInProcessSidecar({ name: 'quick', ...common, fetch: counting('quick'), verifier: { unknownKidCooldownMs: 2000 } });
  // The local JWKS server answers its key set on any path, so it stands in for an authority's base URL.
  forged = await startInProcessSidecar({
    name: 'forged', authorityUrl: new URL(local.jwks.url).origin, natsUrl: nats.url, env: { SA_ISSUER: ISSUER, SA_AUDIENCE: 'api' },
  });
  firstKeyToken = (await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('first') })).access;
  const all = [...plain, quick, forged];
  await until(async () => (await Promise.all(all.map((s) => servingStatus(s)))).every((v) => v === 'SERVING'), 15_000, 'sidecars SERVING');
});

afterAll(async () => {
  await Promise.all([...(plain ?? []), quick, forged].filter(Boolean).map((s) => s.stop()));
  await auth?.stop();
  await local?.close();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

/** Publishes a key pair in the store as another replica's rotation would (encrypted under the shared KEK), without any key event. */
async function publishKeyWithoutEvent(activatesAt: number): Promise<string> {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicJwk = pair.publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicJwk);
  Object.assign(publicJwk, { kid, alg: 'ES256', use: 'sig' });
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(TEST_KEK, 'base64'), iv);
  cipher.setAAD(Buffer.from(kid));
  const body = Buffer.concat([cipher.update(pair.privateKey.export({ type: 'pkcs8', format: 'der' })), cipher.final()]);
  const stored: StoredSigningKey = {
    kid, alg: 'ES256', publicJwk: JSON.stringify(publicJwk),
    encryptedPrivateKey: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'),
    createdAt: activatesAt, activatesAt, retiresAt: 0,
  };
  expect(await auth.store.addSigningKey(stored)).toBe(true);
  return kid;
}

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

async function expectVerdict(s: Sidecar, token: string, verdict: string, what: string): Promise<void> {
  for (const [protocol, client] of [['grpc', s.grpc], ['connect', s.connect]] as const) {
    const v = await verdictOf(client, token);
    expect({ what, sidecar: s.name, protocol, verdict: v.verdict }).toEqual({ what, sidecar: s.name, protocol, verdict });
    if (verdict !== 'VALID') {
      expect(v.message, what).toBeTruthy();
      if (token.length >= 16) expect(v.message, what).not.toContain(token.slice(0, 40));
    }
  }
}

describe('sidecars and signing keys', () => {
  it('a key rotation mid-session: tokens signed before and after it validate on every sidecar', async () => {
    const user = uniqueUser('rot');
    const before = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const oldKid = decodeJwt(before.access).header.kid;
    for (const s of [...plain, quick]) await expectVerdict(s, before.access, 'VALID', 'before rotation');

    // Redis 25 ms away, as across a network: the rotation's store round trips
    // take that long each (on loopback they take well under a millisecond).
    const store = auth.store;
    const listSigningKeys = store.listSigningKeys.bind(store);
    store.listSigningKeys = async () => {
      await new Promise((r) => setTimeout(r, 25));
      return listSigningKeys();
    };
    const rotateStarted = Date.now();
    let added;
    try {
      added = await auth.authority.keys.rotate();
    } finally {
      store.listSigningKeys = listSigningKeys;
    }
    const rotatedAt = Date.now();
    console.log(`[sidecar-keys] rotate() took ${rotatedAt - rotateStarted} ms`);
    const after = await createSession(auth.grpc, auth.keys.admin, { userId: user, deviceId: 'second' });
    const refreshed = (await auth.grpc.refresh({ refreshToken: before.refresh })).tokens!.accessToken;
    expect(decodeJwt(after.access).header.kid).toBe(added.kid);
    expect(decodeJwt(refreshed).header.kid).toBe(added.kid);
    expect(added.kid).not.toBe(oldKid);

    const learnt: Record<string, number> = {};
    await Promise.all([...plain, quick].map(async (s) => {
      let last: unknown;
      try {
        await until(async () => {
          last = await verdictOf(s.grpc, after.access);
          return (last as { verdict: string }).verdict === 'VALID';
        }, 2000, `new kid on ${s.name}`);
      } catch (e) {
        throw new Error(`${(e as Error).message}; last answer ${JSON.stringify(last)}; status ${JSON.stringify((await s.http('/status')).body)}`);
      }
      learnt[s.name] = Date.now() - rotatedAt;
    }));
    console.log(`[sidecar-keys] new kid validates on the sidecars after rotate(): ${JSON.stringify(learnt)} ms; JWKS fetches so far ${JSON.stringify(Object.fromEntries(fetches))}`);
    for (const s of [...plain, quick]) {
      await expectVerdict(s, after.access, 'VALID', 'signed after rotation');
      await expectVerdict(s, refreshed, 'VALID', 'refreshed after rotation');
      await expectVerdict(s, before.access, 'VALID', 'signed before rotation');
      expect((await s.http('/status')).body.keys).toBe(2);
    }
  });

  it('500 tokens with unknown kids cost the authority at most a couple of JWKS requests', async () => {
    const other = newKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const tokens = await Promise.all(Array.from({ length: 500 }, (_, i) =>
      new SignJWT({ iss: 'https://session-authority.local', aud: 'api', sub: `u${i}`, sid: `s${i}`, jti: `j${i}`, client_id: 'default', iat: now, exp: now + 600 })
        .setProtectedHeader({ alg: 'ES256', kid: `made-up-${i}-${randomBytes(4).toString('hex')}`, typ: 'at+jwt' })
        .sign(other.privateKey)));
    await new Promise((r) => setTimeout(r, 2100)); // quick's cooldown has passed: the flood may trigger one fetch there
    const used: Record<string, number> = {};
    const took: Record<string, number> = {};
    for (const s of [quick, plain[0]!]) {
      const before = fetches.get(s.name)!;
      const started = Date.now();
      const verdicts = await Promise.all(tokens.map((t, i) => verdictOf(i % 2 ? s.grpc : s.connect, t, 10_000)));
      took[s.name] = Date.now() - started;
      used[s.name] = fetches.get(s.name)! - before;
      expect(new Set(verdicts.map((v) => v.verdict))).toEqual(new Set(['UNKNOWN_KEY']));
    }
    console.log(`[sidecar-keys] 500 unknown kids per sidecar (ms ${JSON.stringify(took)}) -> JWKS requests ${JSON.stringify(used)}`);
    // Default settings (as the CLI runs): a couple of fetches at most.
    expect(used['plain-1']).toBeLessThanOrEqual(2);
    // quick (2 s cooldown): the refetch does happen, but once per cooldown, not per token.
    expect(used.quick).toBeGreaterThanOrEqual(1);
    expect(used.quick).toBeLessThanOrEqual(1 + Math.floor(took.quick! / 2000));
    // The sidecars still validate real tokens.
    for (const sc of [quick, plain[0]!]) await expectVerdict(sc, firstKeyToken, 'VALID', 'real token after the flood');
  });

  it('a key rotated in without a key event is fetched for the unknown kid', async () => {
    await new Promise((r) => setTimeout(r, 2100)); // past quick's unknown-kid cooldown (the flood made it fetch)
    const kid = await publishKeyWithoutEvent(Date.now());
    await auth.authority.keys.reload(); // the authority picks it up (and signs with it: newest active key)
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('noevent') });
    expect(decodeJwt(s.access).header.kid).toBe(kid);
    const fetchesBefore = fetches.get('quick')!;
    // The very first validation fetches the key set and answers VALID.
    expect(await verdictOf(quick.grpc, s.access)).toMatchObject({ verdict: 'VALID' });
    expect(fetches.get('quick')! - fetchesBefore).toBe(1);
    await expectVerdict(quick, s.access, 'VALID', 'unknown kid fetched');
    expect(fetches.get('quick')! - fetchesBefore).toBe(1);
  });

  it('refuses forged and mis-issued tokens with the right reason, over gRPC and Connect', async () => {
    const key = local.key;
    const now = Math.floor(Date.now() / 1000);
    const good = await local.sign();
    await expectVerdict(forged, good, 'VALID', 'a good token of the local issuer');
    const [, payload, signature] = good.split('.') as [string, string, string];
    const header = { alg: 'ES256', kid: key.kid, typ: 'at+jwt' };

    // alg none, unsigned and with a signature; any case.
    await expectVerdict(forged, `${b64({ alg: 'none', typ: 'at+jwt', kid: key.kid })}.${payload}.`, 'UNSUPPORTED_ALGORITHM', 'alg none');
    await expectVerdict(forged, `${b64({ alg: 'none', typ: 'at+jwt', kid: key.kid })}.${payload}.${signature}`, 'UNSUPPORTED_ALGORITHM', 'alg none, signed');
    await expectVerdict(forged, `${b64({ alg: 'None', typ: 'at+jwt' })}.${payload}.`, 'UNSUPPORTED_ALGORITHM', 'alg None, no kid');

    // HS256 with the public key's bytes as the HMAC secret (algorithm confusion).
    const publicKey: KeyObject = key.publicKey;
    for (const secret of [publicKey.export({ type: 'spki', format: 'pem' }), publicKey.export({ type: 'spki', format: 'der' }), JSON.stringify(key.jwk)]) {
      const signed = `${b64({ ...header, alg: 'HS256' })}.${payload}`;
      await expectVerdict(forged, `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`, 'UNSUPPORTED_ALGORITHM', 'HS256 keyed with the public key');
    }
    // Another accepted algorithm than the key's; a tampered payload; another key.
    await expectVerdict(forged, `${b64({ ...header, alg: 'RS256' })}.${payload}.${signature}`, 'UNSUPPORTED_ALGORITHM', 'RS256 on an ES256 key');
    await expectVerdict(forged, `${b64(header)}.${b64({ ...decodeJwt(good).payload, roles: ['admin'] })}.${signature}`, 'BAD_SIGNATURE', 'tampered payload');
    const stranger = newKeyPair('ES256');
    await expectVerdict(forged, await local.sign({}, {}, { ...stranger, kid: key.kid }), 'BAD_SIGNATURE', 'signed by another key under this kid');
    await expectVerdict(forged, await local.sign({}, {}, stranger), 'UNKNOWN_KEY', 'an unknown kid');

    // Claims (default clock skew 30 s).
    await expectVerdict(forged, await local.sign({ iat: now - 900, exp: now - 31 }), 'EXPIRED', 'expired');
    await expectVerdict(forged, await local.sign({ iat: now - 900, exp: now - 20 }), 'VALID', 'expired within the skew');
    await expectVerdict(forged, await local.sign({ iat: now + 60, exp: now + 900 }), 'NOT_YET_VALID', 'iat in the future');
    await expectVerdict(forged, await local.sign({ nbf: now + 60 }), 'NOT_YET_VALID', 'nbf in the future');
    await expectVerdict(forged, await local.sign({ iss: 'https://evil.example' }), 'WRONG_ISSUER', 'wrong iss');
    await expectVerdict(forged, await local.sign({ iss: `${ISSUER}/` }), 'WRONG_ISSUER', 'iss with a trailing slash');
    await expectVerdict(forged, await local.sign({ aud: 'other-api' }), 'WRONG_AUDIENCE', 'wrong aud');
    await expectVerdict(forged, await local.sign({ aud: ['a', 'b'] }), 'WRONG_AUDIENCE', 'aud list without ours');
    await expectVerdict(forged, await local.sign({}, { typ: 'JWT' }), 'WRONG_TYPE', 'typ JWT');
    await expectVerdict(forged, await local.sign({}, { typ: undefined }), 'WRONG_TYPE', 'no typ');
    await expectVerdict(forged, await local.sign({ sid: 42 }), 'MALFORMED', 'sid not a string');

    // Oversized (over SA_MAX_TOKEN_BYTES, 8192): refused unparsed, even when correctly signed.
    const big = await local.sign({ roles: Array.from({ length: 800 }, (_, i) => `role-${i}`) });
    expect(big.length).toBeGreaterThan(8192);
    await expectVerdict(forged, big, 'TOO_LARGE', 'a signed token over 8192 bytes');
    await expectVerdict(forged, 'a'.repeat(8193), 'TOO_LARGE', '8193 bytes of garbage');

    // Garbage.
    for (const garbage of ['garbage', 'a.b', 'a.b.c.d', '...', 'eyJhbGciOiJFUzI1NiJ9.%%%.sig', `${b64('not json')}.${payload}.${signature}`, ' ']) {
      await expectVerdict(forged, garbage, 'MALFORMED', `garbage ${JSON.stringify(garbage.slice(0, 30))}`);
    }
    await expectRpcError(forged.grpc.validateToken({ accessToken: '' }), Code.InvalidArgument);
    await expectRpcError(forged.connect.validateToken({ accessToken: '' }), Code.InvalidArgument);

    // The same attacks on a sidecar of the real authority, with the authority's own public key.
    const real = { access: firstKeyToken };
    const realHeader = decodeJwt(real.access).header;
    const [, realPayload, realSig] = real.access.split('.') as [string, string, string];
    const jwk = (await auth.grpc.getJwks({})).keys.find((k) => k.kid === realHeader.kid)!;
    const authorityKey = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as never, format: 'jwk' });
    const s = plain[1]!;
    for (const secret of [authorityKey.export({ type: 'spki', format: 'pem' }), authorityKey.export({ type: 'spki', format: 'der' })]) {
      const signed = `${b64({ ...realHeader, alg: 'HS256' })}.${realPayload}`;
      await expectVerdict(s, `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`, 'UNSUPPORTED_ALGORITHM', 'HS256 keyed with the authority key');
    }
    await expectVerdict(s, `${b64({ ...realHeader, alg: 'none' })}.${realPayload}.`, 'UNSUPPORTED_ALGORITHM', 'alg none on a real token');
    await expectVerdict(s, `${b64({ ...realHeader, typ: 'JWT' })}.${realPayload}.${realSig}`, 'WRONG_TYPE', 'typ JWT on a real token');
    await expectVerdict(s, `${real.access.split('.').slice(0, 2).join('.')}.${realSig.slice(0, -4)}AAAA`, 'BAD_SIGNATURE', 'real token, bad signature');
    await expectVerdict(s, await local.sign(), 'UNKNOWN_KEY', 'the local issuer key is not the authority key');
    await expectVerdict(s, 'x'.repeat(10_000), 'TOO_LARGE', 'oversized');
    await expectVerdict(s, 'garbage', 'MALFORMED', 'garbage');
    await expectVerdict(s, real.access, 'VALID', 'the real token');
  });
});
