// JwksCache against a real HTTP server on loopback serving crafted key sets:
// which keys are accepted, and what failures do to the keys held.
import { generateKeyPairSync } from "node:crypto";
import type { JWK } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/shared/clock.js";
import { JwksCache, type JwksCacheOptions } from "../../src/verifier/jwks-cache.js";
import { captureLogger } from "../support/capture-logger.js";
import { newKeyPair, startJwksServer, type JwksServer } from "../support/local-issuer.js";

const publicJwk = (pair: { publicKey: import("node:crypto").KeyObject }) => pair.publicKey.export({ format: "jwk" }) as JWK;

describe("JwksCache", () => {
  let server: JwksServer;
  let clock: ManualClock;
  let cache: JwksCache | undefined;
  const es = newKeyPair("ES256", "es");
  const ed = newKeyPair("EdDSA", "ed");
  const rs = newKeyPair("RS256", "rs");

  beforeEach(async () => {
    clock = new ManualClock(1_767_225_600_000);
    server = await startJwksServer({ kind: "serve", body: { keys: [es.jwk] } });
  });
  afterEach(async () => {
    cache?.close();
    await server.close();
  });
  const make = (over: Partial<JwksCacheOptions> = {}) => (cache = new JwksCache({ url: server.url, clock, ...over }));

  it("accepts each algorithm only on the key type made for it, and reports each ignored key once", async () => {
    const { logger, lines } = captureLogger();
    const ed2 = { ...ed.jwk, kid: "ed-new-name", alg: "Ed25519" };
    const keys = [
      es.jwk, ed.jwk, rs.jwk, ed2,
      { ...publicJwk(generateKeyPairSync("ec", { namedCurve: "P-384" })), kid: "p384", alg: "ES256" },
      { ...publicJwk(generateKeyPairSync("ed448")), kid: "ed448", alg: "EdDSA" },
      { ...publicJwk(generateKeyPairSync("rsa", { modulusLength: 1024 })), kid: "rsa1024", alg: "RS256" },
      { ...es.jwk, kid: "es-as-rs", alg: "RS256" },
      { ...ed.jwk, kid: "ed-as-es", alg: "ES256" },
      { kty: "oct", k: "c2VjcmV0", kid: "hmac", alg: "HS256" },
      { ...es.jwk, kid: "none", alg: "none" },
      { ...es.jwk, kid: "no-alg", alg: undefined },
      { ...es.jwk, kid: "es384", alg: "ES384" },
      { ...es.jwk, kid: "enc", use: "enc" },
      { ...es.jwk, kid: undefined },
      { ...es.jwk, kid: "broken", x: "AAAA" },
      { ...rs.jwk, kid: "es" }, // duplicate kid: the first stays
      "not an object",
    ];
    server.behave({ kind: "serve", body: { keys } });
    make({ logger });
    await cache!.refresh();
    expect(cache!.size).toBe(4);
    expect(cache!.get("es")).toMatchObject({ alg: "ES256" });
    expect(cache!.get("es")!.key.asymmetricKeyType).toBe("ec");
    expect(cache!.get("ed")).toMatchObject({ alg: "EdDSA" });
    expect(cache!.get("ed-new-name")).toMatchObject({ alg: "Ed25519" });
    expect(cache!.get("rs")).toMatchObject({ alg: "RS256" });
    for (const kid of ["p384", "ed448", "rsa1024", "es-as-rs", "ed-as-es", "hmac", "none", "no-alg", "es384", "enc", "broken"]) {
      expect(cache!.get(kid), kid).toBeUndefined();
    }
    const ignored = () => lines.filter((l) => l.msg === "JWKS key ignored");
    expect(ignored()).toHaveLength(keys.length - 4);
    expect(ignored().find((l) => l.kid === "rsa1024")).toMatchObject({ problem: "RSA modulus of 1024 bits is below 2048" });

    await cache!.refresh();
    expect(ignored()).toHaveLength(keys.length - 4);
  });

  it("never holds private key material, even if the JWKS leaks it", async () => {
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const leaked = { ...(pair.privateKey.export({ format: "jwk" }) as JWK), kid: "leaky", alg: "ES256" };
    expect(leaked.d).toBeDefined();
    server.behave({ kind: "serve", body: { keys: [leaked] } });
    await make().refresh();
    expect(cache!.get("leaky")!.key.type).toBe("public");
  });

  it("concurrent refreshes share one fetch", async () => {
    make();
    await Promise.all([cache!.refresh(), cache!.refresh(), cache!.refresh(), cache!.refreshForUnknownKid()]);
    expect(server.requests).toBe(1);
    await cache!.refresh();
    expect(server.requests).toBe(2);
  });

  it("an unknown kid fetches at most once per cooldown", async () => {
    make({ unknownKidCooldownMs: 10_000 });
    await cache!.refresh();
    await Promise.all(Array.from({ length: 100 }, () => cache!.refreshForUnknownKid()));
    expect(server.requests).toBe(1);
    clock.advance(9_999);
    await cache!.refreshForUnknownKid();
    expect(server.requests).toBe(1);
    clock.advance(1);
    await Promise.all(Array.from({ length: 100 }, () => cache!.refreshForUnknownKid()));
    expect(server.requests).toBe(2);
    // Failed fetches count too: a flood against a dead authority is rate-limited as well.
    server.behave({ kind: "status", status: 503 });
    clock.advance(10_000);
    await Promise.all(Array.from({ length: 100 }, () => cache!.refreshForUnknownKid()));
    await cache!.refreshForUnknownKid();
    expect(server.requests).toBe(3);
  });

  it("keeps the keys it holds when a fetch fails, reports why, and recovers", async () => {
    const { logger, messages } = captureLogger();
    // Long enough that a loaded CI machine answers every non-hanging case in time.
    make({ logger, timeoutMs: 1500 });
    await cache!.refresh();
    const fetchedAt = clock.now();
    expect(cache!.status()).toEqual({ keys: 1, lastFetchAt: fetchedAt, error: undefined });

    const failures: [Parameters<JwksServer["behave"]>[0], RegExp][] = [
      [{ kind: "status", status: 503 }, /HTTP 503/],
      [{ kind: "raw", text: "<html>" }, /not JSON/],
      [{ kind: "serve", body: { nope: [] } }, /no keys array/],
      [{ kind: "serve", body: { keys: [] } }, /no usable key/],
      [{ kind: "serve", body: { keys: [{ kty: "oct", k: "AA", kid: "h", alg: "HS256" }] } }, /no usable key/],
      [{ kind: "hang" }, /timed out after 1500 ms/],
    ];
    for (const [behaviour, error] of failures) {
      server.behave(behaviour);
      clock.advance(1000);
      await expect(cache!.refresh()).rejects.toThrow(error);
      expect(cache!.status()).toEqual({ keys: 1, lastFetchAt: fetchedAt, error: expect.stringMatching(error) });
      expect(cache!.get("es")).toBeDefined();
    }
    expect(messages("warn").filter((m) => m.startsWith("JWKS fetch failed"))).toHaveLength(failures.length);

    server.behave({ kind: "serve", body: { keys: [es.jwk, ed.jwk] } });
    await cache!.refresh();
    expect(cache!.status()).toEqual({ keys: 2, lastFetchAt: clock.now(), error: undefined });
  });

  it("an unreachable authority is an error, not an empty key set", async () => {
    make();
    await cache!.refresh();
    await server.close();
    await expect(cache!.refresh()).rejects.toThrow(/fetch failed: .*ECONNREFUSED/);
    expect(cache!.size).toBe(1);
  });

  it("keysChanged() refetches; a key the authority dropped is dropped and reported", async () => {
    let removed = 0;
    make({ onKeysRemoved: () => removed++ });
    await cache!.refresh();
    server.behave({ kind: "serve", body: { keys: [es.jwk, ed.jwk] } });
    cache!.keysChanged();
    await expect.poll(() => cache!.size).toBe(2);
    expect(removed).toBe(0);
    server.behave({ kind: "serve", body: { keys: [ed.jwk] } });
    cache!.keysChanged();
    await expect.poll(() => cache!.get("es")).toBeUndefined();
    expect(removed).toBe(1);
  });

  it("refreshes periodically once started, on a timer that does not hold the process", async () => {
    make({ refreshIntervalMs: 50 });
    await cache!.refresh();
    cache!.start();
    await expect.poll(() => server.requests, { timeout: 2000 }).toBeGreaterThanOrEqual(3);
    cache!.close();
    await new Promise((r) => setTimeout(r, 100)); // a fetch already on its way may still land
    const after = server.requests;
    await new Promise((r) => setTimeout(r, 200));
    expect(server.requests).toBe(after);
  });
});
