// Signing algorithms (SA_SIGNING_ALGORITHM) and forged / mis-issued tokens.
// Forged tokens are signed here with keys this test generates; to get past the
// signature check (and so test iss/aud/exp), one such key is published through
// the shared store exactly as another replica's rotation would publish it.
import {
  createCipheriv, createHmac, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject,
} from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenInvalidReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import type { SigningAlgorithm } from '../../src/config/config.js';
import { ManualClock } from '../../src/shared/clock.js';
import type { SessionStore, StoredSigningKey } from '../../src/store/session-store.js';
import { createSession, decodeJwt, startTestAuthority, TEST_KEK, uniqueUser, type TestAuthority } from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

const ISSUER = 'https://session-authority.local';

function generate(alg: SigningAlgorithm): { publicKey: KeyObject; privateKey: KeyObject } {
  if (alg === 'EdDSA') return generateKeyPairSync('ed25519');
  if (alg === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Publishes a key pair in the store as a replica's rotation would: encrypted under the shared KEK. */
async function publishKey(store: SessionStore, alg: SigningAlgorithm, pair: { publicKey: KeyObject; privateKey: KeyObject }, activatesAt: number): Promise<string> {
  const publicJwk = pair.publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicJwk);
  Object.assign(publicJwk, { kid, alg, use: 'sig' });
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(TEST_KEK, 'base64'), iv);
  cipher.setAAD(Buffer.from(kid));
  const body = Buffer.concat([cipher.update(pair.privateKey.export({ type: 'pkcs8', format: 'der' })), cipher.final()]);
  const stored: StoredSigningKey = {
    kid, alg, publicJwk: JSON.stringify(publicJwk),
    encryptedPrivateKey: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'),
    createdAt: activatesAt, activatesAt, retiresAt: 0,
  };
  expect(await store.addSigningKey(stored)).toBe(true);
  return kid;
}

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

describe.each(['EdDSA', 'RS256', 'ES256'] as const)('signing with %s', (alg) => {
  let redis: RedisProcess;
  let t: TestAuthority;
  const clock = new ManualClock();

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url, clock, env: { SA_SIGNING_ALGORITHM: alg } });
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  const reasonOf = async (token: string) => {
    const v = await t.grpc.validateToken({ accessToken: token });
    return v.valid ? 'VALID' : TokenInvalidReason[v.reason];
  };

  it('issues tokens with the configured alg, typ at+jwt and a published kid; they validate here and with jose', async () => {
    const userId = uniqueUser('alg');
    const s = await createSession(t.grpc, t.keys.admin, { userId, roles: ['r1'] });
    const { header, payload } = decodeJwt(s.access);
    expect(header).toEqual({ alg, kid: expect.any(String), typ: 'at+jwt' });
    expect(payload).toMatchObject({ iss: ISSUER, aud: 'api', sub: userId, sid: s.sid, client_id: 'default', roles: ['r1'] });

    const jwks = (await t.grpc.getJwks({})).keys;
    const key = jwks.find((k) => k.kid === header.kid)!;
    expect(key).toBeDefined();
    expect(key.alg).toBe(alg);
    if (alg === 'EdDSA') expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', n: '', y: '' });
    if (alg === 'RS256') expect(key).toMatchObject({ kty: 'RSA', e: 'AQAB', crv: '', x: '' });
    if (alg === 'RS256') expect(Buffer.from(key.n, 'base64url').length).toBe(384); // 3072-bit modulus
    if (alg === 'ES256') expect(key).toMatchObject({ kty: 'EC', crv: 'P-256' });

    expect(await reasonOf(s.access)).toBe('VALID');
    const r = await t.grpc.refresh({ refreshToken: s.refresh });
    expect(decodeJwt(r.tokens!.accessToken).header).toEqual(header);
    expect(await reasonOf(r.tokens!.accessToken)).toBe('VALID');

    // An independent verifier with the published JWKS accepts the token.
    const doc = (await (await fetch(`${t.httpUrl}/.well-known/jwks.json`)).json()) as { keys: JWK[] };
    const verified = await jwtVerify(s.access, createLocalJWKSet(doc), { issuer: ISSUER, audience: 'api', typ: 'at+jwt', algorithms: [alg] });
    expect(verified.payload.sub).toBe(userId);
  });

  it('refuses alg none, HS256 keyed with the public key, algorithm confusion, tampering, wrong typ and unknown keys', async () => {
    const s = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('forge') });
    const [h, p, sig] = s.access.split('.') as [string, string, string];
    const header = decodeJwt(s.access).header;
    const payload = decodeJwt(s.access).payload;
    const kid = header.kid as string;

    // alg none, in its canonical unsecured form (empty signature) and with one.
    expect(await reasonOf(`${b64({ alg: 'none', typ: 'at+jwt', kid })}.${p}.`)).toBe('UNSUPPORTED_ALGORITHM');
    expect(await reasonOf(`${b64({ alg: header.alg, typ: 'at+jwt', kid })}.${p}.`)).toBe('BAD_SIGNATURE');
    expect(await reasonOf(`${b64({ alg: 'none', typ: 'at+jwt', kid })}.${p}.${sig}`)).toBe('UNSUPPORTED_ALGORITHM');
    expect(await reasonOf(`${b64({ alg: 'NONE', typ: 'at+jwt', kid })}.${p}.${sig}`)).toBe('UNSUPPORTED_ALGORITHM');

    // HS256 with the authority's public key as the HMAC secret (the classic confusion attack).
    const jwk = (await t.grpc.getJwks({})).keys.find((k) => k.kid === kid)!;
    const publicJwk = Object.fromEntries(Object.entries({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, n: jwk.n, e: jwk.e }).filter(([, v]) => v));
    const publicKey = createPublicKey({ key: publicJwk as never, format: 'jwk' });
    const secrets = [publicKey.export({ type: 'spki', format: 'pem' }), publicKey.export({ type: 'spki', format: 'der' }), JSON.stringify(publicJwk)];
    for (const secret of secrets) {
      const hs = `${b64({ alg: 'HS256', typ: 'at+jwt', kid })}.${p}`;
      expect(await reasonOf(`${hs}.${createHmac('sha256', secret).update(hs).digest('base64url')}`)).toBe('UNSUPPORTED_ALGORITHM');
    }
    for (const other of ['HS512', 'PS256', 'ES384', 'RS512']) {
      expect(await reasonOf(`${b64({ alg: other, typ: 'at+jwt', kid })}.${p}.${sig}`)).toBe('UNSUPPORTED_ALGORITHM');
    }
    // Another accepted algorithm than the key's.
    const confused = alg === 'RS256' ? 'ES256' : 'RS256';
    expect(await reasonOf(`${b64({ ...header, alg: confused })}.${p}.${sig}`)).toBe('UNSUPPORTED_ALGORITHM');

    // Tampered payload with the original signature.
    expect(await reasonOf(`${h}.${b64({ ...payload, roles: ['admin'] })}.${sig}`)).toBe('BAD_SIGNATURE');
    // Signature of another token.
    const other = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('other') });
    expect(await reasonOf(`${h}.${p}.${other.access.split('.')[2]}`)).toBe('BAD_SIGNATURE');

    // typ is checked before the key: wrong or missing typ.
    for (const typ of ['JWT', 'jwt', undefined]) {
      expect(await reasonOf(`${b64({ ...header, typ })}.${p}.${sig}`)).toBe('WRONG_TYPE');
    }
    // A key this test made up, never published.
    const mine = generate(alg);
    const myKid = 'not-published-' + randomBytes(4).toString('hex');
    const unpublished = await new SignJWT(payload).setProtectedHeader({ alg, kid: myKid, typ: 'at+jwt' }).sign(mine.privateKey);
    clock.advance(1001); // past the unknown-kid reload rate limit: the store is reread and still lacks it
    expect(await reasonOf(unpublished)).toBe('UNKNOWN_KEY');
    const noKid = await new SignJWT(payload).setProtectedHeader({ alg, typ: 'at+jwt' }).sign(mine.privateKey);
    expect(await reasonOf(noKid)).toBe('UNKNOWN_KEY');
    // With the authority's kid but signed by this test's key.
    const wrongKey = await new SignJWT(payload).setProtectedHeader({ alg, kid, typ: 'at+jwt' }).sign(mine.privateKey);
    expect(await reasonOf(wrongKey)).toBe('BAD_SIGNATURE');

    // The real token is still fine.
    expect(await reasonOf(s.access)).toBe('VALID');
  });

  it('claims are checked once the signature verifies: wrong iss, aud, expired, not yet valid, bad sid', async () => {
    const s = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('claims') });
    const pair = generate(alg);
    // Published, but activating in a day: verifiers know it, the authority does not sign with it yet.
    const kid = await publishKey(t.store, alg, pair, clock.now() + 86_400_000);
    const now = Math.floor(clock.now() / 1000);
    const claims = {
      iss: ISSUER, aud: 'api', sub: 'claims-user', sid: s.sid, jti: randomBytes(8).toString('hex'), client_id: 'default',
      iat: now, exp: now + 600, roles: ['user'],
    };
    const sign = (c: Record<string, unknown>, header: Record<string, unknown> = {}) =>
      new SignJWT(c).setProtectedHeader({ alg, kid, typ: 'at+jwt', ...header }).sign(pair.privateKey);

    clock.advance(1001); // an unknown kid makes the authority reread the shared key set (rate-limited to 1/s)
    expect(await reasonOf(await sign(claims))).toBe('VALID');
    expect((await t.grpc.getJwks({})).keys.map((k) => k.kid)).toContain(kid);
    expect(await reasonOf(await sign(claims, { typ: 'application/at+jwt' }))).toBe('VALID');
    expect(await reasonOf(await sign({ ...claims, aud: ['other', 'api'] }))).toBe('VALID');

    expect(await reasonOf(await sign({ ...claims, iss: 'https://evil.example' }))).toBe('WRONG_ISSUER');
    expect(await reasonOf(await sign({ ...claims, iss: `${ISSUER}/` }))).toBe('WRONG_ISSUER');
    expect(await reasonOf(await sign({ ...claims, aud: 'other-api' }))).toBe('WRONG_AUDIENCE');
    expect(await reasonOf(await sign({ ...claims, aud: ['a', 'b'] }))).toBe('WRONG_AUDIENCE');
    expect(await reasonOf(await sign(claims, { typ: 'JWT' }))).toBe('WRONG_TYPE');
    // Default clock skew is 30 s.
    expect(await reasonOf(await sign({ ...claims, iat: now - 700, exp: now - 31 }))).toBe('EXPIRED');
    expect(await reasonOf(await sign({ ...claims, iat: now - 700, exp: now - 20 }))).toBe('VALID');
    expect(await reasonOf(await sign({ ...claims, iat: now + 60, exp: now + 600 }))).toBe('NOT_YET_VALID');
    expect(await reasonOf(await sign({ ...claims, nbf: now + 60 }))).toBe('NOT_YET_VALID');
    expect(await reasonOf(await sign({ ...claims, sid: 'short' }))).toBe('MALFORMED');
    const { sid: _sid, ...noSid } = claims;
    expect(await reasonOf(await sign(noSid))).toBe('MALFORMED');
    expect(await reasonOf(await sign({ ...claims, exp: 'tomorrow' }))).toBe('MALFORMED');
    expect(await reasonOf(await sign({ ...claims, roles: 'admin' }))).toBe('MALFORMED');

    // The authority itself still signs with its active key, not the future one.
    const fresh = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('fresh') });
    expect(decodeJwt(fresh.access).header.kid).not.toBe(kid);
  });
});
