// The verifier library against a real authority started in-process: real
// fetches of its /.well-known/jwks.json (counted by a wrapper that delegates to
// the real fetch), real tokens from CreateSession, a real key rotation.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/shared/clock.js";
import { createVerifier, type FeedSink, type RevocationFeed, type Verifier } from "../../src/verifier/index.js";
import { createSession, decodeJwt, startTestAuthority, uniqueUser, type TestAuthority } from "../support/authority.js";

const ISSUER = "https://session-authority.local";

/** Always connected; keeps the sink so a test can announce key changes as the NATS feed would. */
class QuietFeed implements RevocationFeed {
  sink: FeedSink | undefined;
  async start(sink: FeedSink) {
    this.sink = sink;
  }
  health() {
    return { connected: true, since: 0 };
  }
  async close() {}
}

function countingFetch() {
  const calls: string[] = [];
  const wrapped: typeof fetch = (input, init) => {
    calls.push(String(input));
    return fetch(input, init);
  };
  return { fetch: wrapped, calls };
}

const withKid = (token: string, kid: string) => {
  const [, p, s] = token.split(".");
  const header = { ...decodeJwt(token).header, kid };
  return `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${p}.${s}`;
};

describe("verifier against a real authority", () => {
  let t: TestAuthority;
  let stopped = false;
  let verifier: Verifier;
  let feed: QuietFeed;
  const counter = countingFetch();
  // The verifier's own clock, moved by hand to step past the unknown-kid cooldown;
  // it starts at real time, so the authority's tokens are current for it.
  const clock = new ManualClock();

  beforeAll(async () => {
    t = await startTestAuthority({ env: { SA_KEY_PUBLISH_DELAY: "0" } });
    feed = new QuietFeed();
    verifier = createVerifier({
      jwksUrl: `${t.httpUrl}/.well-known/jwks.json`, issuer: ISSUER, audience: "api", feed, clock, fetch: counter.fetch,
      unknownKidCooldownMs: 10_000, jwksTimeoutMs: 2000,
    });
    await verifier.ready();
  });
  afterAll(async () => {
    await verifier?.close();
    if (!stopped) await t?.stop();
  });

  it("verifies the authority's tokens", async () => {
    expect(counter.calls).toEqual([`${t.httpUrl}/.well-known/jwks.json`]);
    const userId = uniqueUser("verify");
    const s = await createSession(t.grpc, t.keys.admin, { userId, roles: ["editor"], permissions: ["docs:write"] });
    const result = await verifier.verify(s.access);
    expect(result).toMatchObject({
      ok: true,
      claims: { iss: ISSUER, aud: "api", sub: userId, sid: s.sid, client_id: "default", roles: ["editor"], permissions: ["docs:write"] },
    });
    expect(verifier.verifySync(s.access)).toBe(result);
    expect(verifier.status()).toMatchObject({ ready: true, keys: 1, feed: "live", lastKeyFetchAt: expect.any(Number) });
  });

  it("after a rotation, a token signed with the new key verifies after exactly one refetch", async () => {
    const before = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser("before") });
    expect(verifier.verifySync(before.access).ok).toBe(true);
    const added = await t.authority.keys.rotate();
    const after = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser("after") });
    expect(decodeJwt(after.access).header.kid).toBe(added.kid);

    const fetches = counter.calls.length;
    expect(verifier.verifySync(after.access)).toMatchObject({ ok: false, reason: "unknown_key" }); // never fetches
    clock.advance(10_001); // past the cooldown since the first load
    expect(await verifier.verify(after.access)).toMatchObject({ ok: true });
    expect(counter.calls.length).toBe(fetches + 1);
    expect(verifier.status().keys).toBe(2);
    // Tokens of the old key stay good while it is still published.
    expect((await verifier.verify(before.access)).ok).toBe(true);
    expect(counter.calls.length).toBe(fetches + 1);
  });

  it("1000 tokens with random kids cause at most one fetch per cooldown", async () => {
    const s = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser("flood") });
    const forged = Array.from({ length: 1000 }, () => withKid(s.access, randomBytes(16).toString("base64url")));
    clock.advance(10_001);
    const fetches = counter.calls.length;
    const results = await Promise.all(forged.map((token) => verifier.verify(token)));
    expect(results.every((r) => !r.ok && r.reason === "unknown_key")).toBe(true);
    expect(counter.calls.length - fetches).toBeLessThanOrEqual(1);
    expect(counter.calls.length - fetches).toBe(1);

    // Within the same cooldown, a second wave (one at a time this time) fetches nothing.
    clock.advance(5000);
    for (const token of forged) expect((await verifier.verify(token)).ok).toBe(false);
    expect(counter.calls.length - fetches).toBe(1);
    expect((await verifier.verify(s.access)).ok).toBe(true);
  });

  it("a key-change event from the feed refetches at once, cooldown or not", async () => {
    const fetches = counter.calls.length;
    feed.sink!.keysChanged();
    await expect.poll(() => counter.calls.length).toBe(fetches + 1);
  });

  it("with the authority stopped, the keys held still verify and status reports the fetch error", async () => {
    const unseen = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser("unseen") });
    const seen = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser("seen") });
    expect(verifier.verifySync(seen.access).ok).toBe(true);
    await t.stop();
    stopped = true;

    feed.sink!.keysChanged();
    await expect.poll(() => verifier.status().keyFetchError).toMatch(/fetch failed/);
    const status = verifier.status();
    expect(status).toMatchObject({ ready: true, keys: 2, feed: "live" });

    // A token never seen before goes through the full signature check on the stale keys.
    expect(verifier.verifySync(unseen.access)).toMatchObject({ ok: true });
    expect(await verifier.verify(seen.access)).toMatchObject({ ok: true });
    // An unknown kid still gets its (failing, rate-limited) refetch and a clean answer.
    clock.advance(10_001);
    expect(await verifier.verify(withKid(seen.access, "gone"))).toMatchObject({ ok: false, reason: "unknown_key" });
    expect(verifier.status()).toMatchObject({ keys: 2, keyFetchError: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe.each(["EdDSA", "RS256"] as const)("verifier against a real %s authority", (alg) => {
  let t: TestAuthority;
  let verifier: Verifier;

  beforeAll(async () => {
    t = await startTestAuthority({ env: { SA_SIGNING_ALGORITHM: alg } });
    verifier = createVerifier({ jwksUrl: `${t.httpUrl}/.well-known/jwks.json`, issuer: ISSUER, audience: "api" });
    await verifier.ready();
  });
  afterAll(async () => {
    await verifier?.close();
    await t?.stop();
  });

  it("verifies its tokens", async () => {
    const s = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser(alg) });
    expect(decodeJwt(s.access).header.alg).toBe(alg);
    expect(await verifier.verify(s.access)).toMatchObject({ ok: true, claims: { sid: s.sid } });
    const [h, p] = s.access.split(".");
    expect(verifier.verifySync(`${h}.${p}.${Buffer.alloc(alg === "RS256" ? 384 : 64).toString("base64url")}`)).toMatchObject({ reason: "bad_signature" });
  });
});
