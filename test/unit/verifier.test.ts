// The Verifier end to end against a local issuer (real HTTP JWKS on loopback)
// and an in-memory RevocationFeed: the feed is the verifier's seam, so this
// fake is an implementation of it, not a mock of NATS.
import { createHmac, randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock, type Clock } from "../../src/shared/clock.js";
import {
  createVerifier, type FeedSink, type RevocationEntry, type RevocationFeed, type Verifier, type VerifierOptions,
} from "../../src/verifier/index.js";
import { captureLogger } from "../support/capture-logger.js";
import { AUDIENCE, ISSUER, newKeyPair, startLocalIssuer, type LocalIssuer } from "../support/local-issuer.js";

/** An in-memory feed: entries published before start() are replayed; start() resolves when `replayed()` is called (or at once). */
class FakeFeed implements RevocationFeed {
  sink: FeedSink | undefined;
  closed = false;
  private connected = true;
  private since: number;
  private finishReplay: (() => void) | undefined;
  private failStarts = 0;

  constructor(private readonly clock: Clock, private readonly backlog: RevocationEntry[] = [], private readonly holdReplay = false) {
    this.since = clock.now();
  }

  start(sink: FeedSink): Promise<void> {
    if (this.failStarts > 0) {
      this.failStarts--;
      return Promise.reject(new Error("nats: connection refused"));
    }
    this.sink = sink;
    for (const entry of this.backlog) sink.apply(entry);
    if (!this.holdReplay) return Promise.resolve();
    return new Promise((resolve) => (this.finishReplay = resolve));
  }
  replayed(): void {
    this.finishReplay?.();
  }
  failNextStarts(n: number): void {
    this.failStarts = n;
  }
  health() {
    return { connected: this.connected, since: this.since };
  }
  async close() {
    this.closed = true;
  }
  publish(entry: RevocationEntry): void {
    this.sink!.apply(entry);
  }
  disconnect(): void {
    this.connected = false;
    this.since = this.clock.now();
  }
  reconnect(): void {
    this.connected = true;
    this.since = this.clock.now();
  }
}

const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const decode = (token: string) => {
  const [h, p] = token.split(".");
  return { header: JSON.parse(Buffer.from(h!, "base64url").toString()), payload: JSON.parse(Buffer.from(p!, "base64url").toString()) };
};

describe("Verifier", () => {
  let clock: ManualClock;
  let issuer: LocalIssuer;
  let verifier: Verifier | undefined;

  beforeEach(async () => {
    clock = new ManualClock(1_767_225_600_000);
    issuer = await startLocalIssuer(clock);
  });
  afterEach(async () => {
    await verifier?.close();
    verifier = undefined;
    await issuer.close();
  });

  const build = (over: Partial<VerifierOptions> = {}) =>
    (verifier = createVerifier({ jwksUrl: issuer.jwks.url, issuer: ISSUER, audience: AUDIENCE, clock, ...over }));

  describe("options", () => {
    const base = () => ({ jwksUrl: issuer.jwks.url, issuer: ISSUER, audience: AUDIENCE });
    it.each([
      ["jwksUrl", { jwksUrl: "" }],
      ["jwksUrl", { jwksUrl: "not a url" }],
      ["jwksUrl", { jwksUrl: "file:///etc/passwd" }],
      ["issuer", { issuer: "" }],
      ["audience", { audience: 42 }],
      ["feed", { feed: { start: async () => {} } }],
      ["clockSkewMs", { clockSkewMs: -1 }],
      ["maxTokenBytes", { maxTokenBytes: 0 }],
      ["maxStalenessMs", { maxStalenessMs: Number.NaN }],
      ["failMode", { failMode: "sometimes" }],
      ["tokenCacheSize", { tokenCacheSize: 1.5 }],
      ["jwksRefreshIntervalMs", { jwksRefreshIntervalMs: 10 }],
      ["jwksTimeoutMs", { jwksTimeoutMs: "5s" }],
      ["unknownKidCooldownMs", { unknownKidCooldownMs: -5 }],
      ["clock", { clock: {} }],
      ["logger", { logger: { warn: () => {} } }],
      ["fetch", { fetch: "https://example.com" }],
    ])("a bad %s is refused by name", (name, bad) => {
      expect(() => createVerifier({ ...base(), ...bad } as unknown as VerifierOptions)).toThrow(new RegExp(`option ${name} `));
    });
  });

  it("is unavailable until the keys are loaded and the feed has replayed to its end", async () => {
    const revokedJti = "revoked-in-backlog";
    const feed = new FakeFeed(clock, [{ kind: "token", jti: revokedJti, reason: 4, expiresAt: clock.now() + 60_000 }], true);
    build({ feed });
    const good = await issuer.sign();
    const early = await issuer.sign({ jti: revokedJti });
    expect(verifier!.verifySync(good)).toMatchObject({ ok: false, reason: "unavailable" });
    expect(await verifier!.verify(good)).toMatchObject({ ok: false, reason: "unavailable" });
    expect(verifier!.status()).toMatchObject({ ready: false, feed: "replaying" });

    let ready = false;
    void verifier!.ready().then(() => (ready = true));
    await expect.poll(() => verifier!.status().keys).toBe(1);
    await new Promise((r) => setTimeout(r, 20));
    expect(ready).toBe(false); // keys alone are not enough
    expect(verifier!.verifySync(good)).toMatchObject({ reason: "unavailable" });

    feed.replayed();
    await verifier!.ready();
    expect(verifier!.verifySync(good)).toMatchObject({ ok: true, claims: { sub: "user-1", iss: ISSUER } });
    expect(verifier!.verifySync(early)).toMatchObject({ ok: false, reason: "revoked", revocationReason: 4 });
    expect(verifier!.status()).toEqual({
      ready: true, keys: 1, lastKeyFetchAt: clock.now(), revocations: { tokens: 1, sessions: 0, users: 0 }, feed: "live", staleForMs: 0,
    });
  });

  it("retries the first JWKS load and a failed feed start until both succeed", async () => {
    issuer.jwks.behave({ kind: "status", status: 503 });
    const feed = new FakeFeed(clock);
    feed.failNextStarts(2);
    build({ feed });
    await expect.poll(() => issuer.jwks.requests).toBeGreaterThanOrEqual(2);
    expect(verifier!.status()).toMatchObject({ ready: false, keys: 0, keyFetchError: "JWKS endpoint answered HTTP 503" });
    issuer.jwks.behave({ kind: "serve", body: { keys: [issuer.key.jwk] } });
    await verifier!.ready();
    expect(verifier!.status()).toMatchObject({ ready: true, keys: 1 });
    expect(verifier!.status().keyFetchError).toBeUndefined();
    expect(verifier!.verifySync(await issuer.sign()).ok).toBe(true);
  });

  it("without a feed it checks signatures and claims only, and says so", async () => {
    const { logger, messages } = captureLogger();
    build({ logger });
    await verifier!.ready();
    expect(verifier!.verifySync(await issuer.sign()).ok).toBe(true);
    expect(verifier!.status()).toMatchObject({ feed: "none", staleForMs: 0, revocations: { tokens: 0, sessions: 0, users: 0 } });
    expect(messages("warn")).toContainEqual(expect.stringContaining("no revocation feed"));
  });

  it("refuses revoked tokens by jti, sid and user cut-off, on cache hits too", async () => {
    const feed = new FakeFeed(clock);
    build({ feed });
    await verifier!.ready();
    const byJti = await issuer.sign();
    const bySid = await issuer.sign({ sid: "session-a" });
    const sameSession = await issuer.sign({ sid: "session-a" });
    const byUser = await issuer.sign({ sub: "user-9" });
    const all = [byJti, bySid, sameSession, byUser];
    for (const t of all) expect(verifier!.verifySync(t).ok).toBe(true); // now cached
    const exp = clock.now() + 900_000;

    feed.publish({ kind: "token", jti: decode(byJti).payload.jti, reason: 1, expiresAt: exp });
    expect(verifier!.verifySync(byJti)).toEqual({ ok: false, reason: "revoked", message: "token has been revoked", revocationReason: 1 });
    expect(await verifier!.verify(byJti)).toMatchObject({ reason: "revoked" });
    expect(verifier!.verifySync(bySid).ok).toBe(true);

    feed.publish({ kind: "session", sid: "session-a", reason: 2, expiresAt: exp });
    expect(verifier!.verifySync(bySid)).toMatchObject({ reason: "revoked", revocationReason: 2 });
    expect(verifier!.verifySync(sameSession)).toMatchObject({ reason: "revoked", revocationReason: 2 });

    clock.advance(2000);
    feed.publish({ kind: "user", userId: "user-9", notBefore: Math.floor(clock.now() / 1000), reason: 3, expiresAt: exp });
    expect(verifier!.verifySync(byUser)).toMatchObject({ reason: "revoked", revocationReason: 3 });
    // A token issued after the cut-off (the user signed in again) is fine; so is another user's.
    expect(verifier!.verifySync(await issuer.sign({ sub: "user-9" })).ok).toBe(true);
    expect(verifier!.verifySync(await issuer.sign({ sub: "user-10", iat: Math.floor(clock.now() / 1000) - 60 })).ok).toBe(true);
    expect(verifier!.status().revocations).toEqual({ tokens: 1, sessions: 1, users: 1 });

    // Malformed entries are ignored, not thrown at the feed.
    feed.publish({ kind: "user", userId: "user-10", reason: 3, expiresAt: exp });
    expect(verifier!.status().revocations.users).toBe(1);
  });

  it("fails closed once the feed has been disconnected longer than maxStalenessMs, and recovers", async () => {
    const { logger, lines } = captureLogger();
    const feed = new FakeFeed(clock);
    build({ feed, logger, maxStalenessMs: 30_000 });
    await verifier!.ready();
    const token = await issuer.sign();
    expect(verifier!.verifySync(token).ok).toBe(true);

    feed.disconnect();
    clock.advance(30_000);
    expect(verifier!.verifySync(token).ok).toBe(true); // within the allowance
    expect(verifier!.status()).toMatchObject({ feed: "live", staleForMs: 30_000 });
    clock.advance(1);
    for (let i = 0; i < 5; i++) expect(verifier!.verifySync(token)).toMatchObject({ ok: false, reason: "unavailable", message: expect.stringContaining("revocation feed") });
    expect(await verifier!.verify(token)).toMatchObject({ reason: "unavailable" });
    expect(verifier!.verifySync("garbage")).toMatchObject({ reason: "unavailable" });
    expect(verifier!.status()).toMatchObject({ ready: true, feed: "stale", staleForMs: 30_001 });
    const stale = lines.filter((l) => l.msg.startsWith("revocation feed is stale"));
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({ level: 40, failMode: "closed" });

    feed.reconnect();
    expect(verifier!.verifySync(token).ok).toBe(true);
    expect(verifier!.status()).toMatchObject({ feed: "live", staleForMs: 0 });
    expect(lines.filter((l) => l.msg === "revocation feed is live again")).toHaveLength(1);
    verifier!.verifySync(token);
    expect(lines.filter((l) => l.msg.startsWith("revocation feed is"))).toHaveLength(2);
  });

  it("fail open keeps verifying with what it has while the feed is stale, and says so", async () => {
    const { logger, lines } = captureLogger();
    const feed = new FakeFeed(clock);
    build({ feed, logger, failMode: "open", maxStalenessMs: 1000 });
    await verifier!.ready();
    const token = await issuer.sign();
    const revoked = await issuer.sign();
    feed.publish({ kind: "token", jti: decode(revoked).payload.jti, reason: 1, expiresAt: clock.now() + 60_000 });
    feed.disconnect();
    clock.advance(5000);
    expect(verifier!.verifySync(token).ok).toBe(true);
    expect(verifier!.verifySync(revoked)).toMatchObject({ reason: "revoked" });
    expect(verifier!.verifySync(await issuer.sign({ iss: "https://evil.test" }))).toMatchObject({ reason: "wrong_issuer" });
    expect(verifier!.status()).toMatchObject({ feed: "stale", staleForMs: 5000 });
    expect(lines.filter((l) => l.msg.startsWith("revocation feed is stale"))).toEqual([expect.objectContaining({ level: 40, failMode: "open" })]);
    feed.reconnect();
    expect(verifier!.status()).toMatchObject({ feed: "live" });
  });

  it("refuses forged and mis-issued tokens with the right reason", async () => {
    build({ feed: new FakeFeed(clock) });
    await verifier!.ready();
    const good = await issuer.sign();
    const [h, p, sig] = good.split(".") as [string, string, string];
    const { header, payload } = decode(good);
    const now = Math.floor(clock.now() / 1000);
    const hs256 = (secret: string | Buffer) => {
      const signingInput = `${b64({ alg: "HS256", typ: "at+jwt", kid: header.kid })}.${p}`;
      return `${signingInput}.${createHmac("sha256", secret).update(signingInput).digest("base64url")}`;
    };
    const publicKey = issuer.key.publicKey;
    const stranger = newKeyPair("ES256", issuer.key.kid);

    const cases: [string, string | Promise<string>, string][] = [
      ["alg none, no signature", `${b64({ alg: "none", typ: "at+jwt", kid: header.kid })}.${p}.`, "unsupported_algorithm"],
      ["alg none, with a signature", `${b64({ alg: "none", typ: "at+jwt", kid: header.kid })}.${p}.${sig}`, "unsupported_algorithm"],
      ["HS256 keyed with the PEM public key", hs256(publicKey.export({ type: "spki", format: "pem" }) as string), "unsupported_algorithm"],
      ["HS256 keyed with the DER public key", hs256(publicKey.export({ type: "spki", format: "der" })), "unsupported_algorithm"],
      ["HS256 keyed with the JWK", hs256(JSON.stringify(issuer.key.jwk)), "unsupported_algorithm"],
      ["RS256 header on an ES256 key", `${b64({ ...header, alg: "RS256" })}.${p}.${sig}`, "unsupported_algorithm"],
      ["tampered payload", `${h}.${b64({ ...payload, roles: ["admin"] })}.${sig}`, "bad_signature"],
      ["signed by another key under our kid", issuer.sign({}, {}, stranger), "bad_signature"],
      ["expired", issuer.sign({ iat: now - 1000, exp: now - 31 }), "expired"],
      ["issued in the future", issuer.sign({ iat: now + 60, exp: now + 900 }), "not_yet_valid"],
      ["nbf in the future", issuer.sign({ nbf: now + 60 }), "not_yet_valid"],
      ["wrong issuer", issuer.sign({ iss: "https://evil.test" }), "wrong_issuer"],
      ["wrong audience", issuer.sign({ aud: "other" }), "wrong_audience"],
      ["typ JWT", issuer.sign({}, { typ: "JWT" }), "wrong_type"],
      ["no typ", issuer.sign({}, { typ: undefined }), "wrong_type"],
      ["oversized", issuer.sign({ pad: "x".repeat(9000) }), "too_large"],
      ["garbage", "garbage", "malformed"],
      ["empty", "", "malformed"],
      ["four segments", `${good}.x`, "malformed"],
      ["header not JSON", `${b64("nope")}.${p}.${sig}`, "malformed"],
      ["missing sid", issuer.sign({ sid: undefined }), "malformed"],
    ];
    for (const [name, token, reason] of cases) {
      const t = await token;
      expect(verifier!.verifySync(t), name).toMatchObject({ ok: false, reason });
      expect(await verifier!.verify(t), name).toMatchObject({ ok: false, reason });
    }
    expect(verifier!.verifySync(undefined as unknown as string)).toMatchObject({ reason: "malformed" });
    // Skew: 30 s by default, both ways.
    expect(verifier!.verifySync(await issuer.sign({ iat: now - 1000, exp: now - 29 })).ok).toBe(true);
    expect(verifier!.verifySync(await issuer.sign({ iat: now + 29 })).ok).toBe(true);
    expect(verifier!.verifySync(await issuer.sign({ aud: ["other", AUDIENCE] })).ok).toBe(true);
    expect(verifier!.verifySync(good).ok).toBe(true);
  });

  it("a cached token stops verifying at exp plus skew", async () => {
    build({ feed: new FakeFeed(clock), clockSkewMs: 5000 });
    await verifier!.ready();
    const now = Math.floor(clock.now() / 1000);
    const token = await issuer.sign({ exp: now + 60 });
    expect(verifier!.verifySync(token).ok).toBe(true);
    clock.set((now + 60) * 1000 + 4999);
    expect(verifier!.verifySync(token).ok).toBe(true);
    clock.advance(1);
    expect(verifier!.verifySync(token)).toMatchObject({ reason: "expired" });
  });

  it("an unknown kid: verifySync never fetches, verify refetches once per cooldown, keysChanged refetches", async () => {
    const feed = new FakeFeed(clock);
    build({ feed, unknownKidCooldownMs: 10_000 });
    await verifier!.ready();
    expect(issuer.jwks.requests).toBe(1);
    const cached = await issuer.sign();
    expect(verifier!.verifySync(cached).ok).toBe(true);
    const next = newKeyPair("EdDSA");
    const rotated = await issuer.sign({}, {}, next);
    issuer.jwks.behave({ kind: "serve", body: { keys: [issuer.key.jwk, next.jwk] } });

    expect(verifier!.verifySync(rotated)).toMatchObject({ reason: "unknown_key" });
    expect(await verifier!.verify(rotated)).toMatchObject({ reason: "unknown_key" }); // within the cooldown of the first load
    expect(issuer.jwks.requests).toBe(1);
    clock.advance(10_000);
    expect(await verifier!.verify(rotated)).toMatchObject({ ok: true });
    expect(issuer.jwks.requests).toBe(2);

    const third = newKeyPair("RS256");
    issuer.jwks.behave({ kind: "serve", body: { keys: [next.jwk, third.jwk] } });
    feed.sink!.keysChanged();
    await expect.poll(() => verifier!.verifySync(cached)).toMatchObject({ reason: "unknown_key" });
    // The retired key took the cached tokens it vouched for with it (above); the new one works.
    expect(issuer.jwks.requests).toBe(3);
    expect(verifier!.verifySync(await issuer.sign({}, {}, third)).ok).toBe(true);
    expect(verifier!.verifySync(rotated).ok).toBe(true);
  });

  it("hands out frozen claims, shared between hits", async () => {
    build();
    await verifier!.ready();
    const token = await issuer.sign();
    const first = verifier!.verifySync(token);
    const second = verifier!.verifySync(token);
    expect(second).toBe(first);
    if (!first.ok) throw new Error("should verify");
    expect(Object.isFrozen(first.claims) && Object.isFrozen(first.claims.roles)).toBe(true);
  });

  it("close() stops everything: tokens are unavailable, the feed is closed, a pending ready() rejects", async () => {
    const feed = new FakeFeed(clock, [], true);
    build({ feed });
    const ready = verifier!.ready();
    await verifier!.close();
    await expect(ready).rejects.toThrow(/closed before it was ready/);
    expect(feed.closed).toBe(true);
    expect(verifier!.verifySync(await issuer.sign())).toMatchObject({ reason: "unavailable", message: "verifier is closed" });
    expect(verifier!.status().ready).toBe(false);
  });

  it("a cached verification costs about a microsecond", async () => {
    build({ feed: new FakeFeed(clock) });
    await verifier!.ready();
    // A fresh copy of the string, as a new request would carry.
    const token = await issuer.sign({ jti: randomBytes(16).toString("base64url") });
    const v = verifier!;
    expect(v.verifySync(token).ok).toBe(true);
    const copies = Array.from({ length: 1000 }, () => (" " + token).slice(1));
    for (let i = 0; i < 50_000; i++) v.verifySync(copies[i % 1000]!);
    const n = 200_000;
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) v.verifySync(copies[i % 1000]!);
    const ns = Number(process.hrtime.bigint() - start) / n;
    console.log(`cached verifySync: ${ns.toFixed(0)} ns`);
    expect(ns).toBeLessThan(20_000); // generous for slow CI; ~1 µs expected
  });
});
