import { describe, expect, it } from "vitest";
import { TokenCache } from "../../src/verifier/token-cache.js";
import type { AccessTokenClaims } from "../../src/verifier/verify-access-token.js";

const T0 = 1_767_225_600_000;
const claims = (exp: number, jti = "j"): AccessTokenClaims => ({
  iss: "i", sub: "u", aud: "api", exp, iat: exp - 900, jti, client_id: "c", sid: "s", username: "alice", roles: ["user"], permissions: [],
});

describe("TokenCache", () => {
  it("hands out the same frozen result for the exact token string", () => {
    const cache = new TokenCache({ capacity: 10, clockSkewMs: 0 });
    expect(cache.get("t1", T0)).toBeUndefined();
    const set = cache.set("t1", claims(T0 / 1000 + 60));
    const hit = cache.get("t1", T0);
    expect(hit).toBe(set);
    expect(hit).toEqual({ ok: true, claims: expect.objectContaining({ sub: "u" }) });
    expect(Object.isFrozen(hit!.claims)).toBe(true);
    expect(Object.isFrozen(hit!.claims.roles)).toBe(true);
    expect(() => (hit!.claims.roles as string[]).push("admin")).toThrow();
    expect(cache.get("t1 ", T0)).toBeUndefined();
  });

  it("keeps an entry only until the token's exp plus the skew", () => {
    const cache = new TokenCache({ capacity: 10, clockSkewMs: 30_000 });
    const exp = T0 / 1000 + 60;
    cache.set("t", claims(exp));
    expect(cache.get("t", exp * 1000 + 29_999)).toBeDefined();
    expect(cache.get("t", exp * 1000 + 30_000)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it("is bounded; eviction gives a recently used entry a second chance", () => {
    const cache = new TokenCache({ capacity: 3, clockSkewMs: 0 });
    const exp = T0 / 1000 + 600;
    for (const t of ["a", "b", "c"]) cache.set(t, claims(exp, t));
    expect(cache.get("a", T0)).toBeDefined(); // a is used, b is not
    cache.set("d", claims(exp, "d"));
    expect(cache.size).toBe(3);
    expect(cache.get("b", T0)).toBeUndefined();
    expect(cache.get("a", T0)).toBeDefined();
    expect(cache.get("d", T0)).toBeDefined();

    for (let i = 0; i < 1000; i++) cache.set(`x${i}`, claims(exp, `x${i}`));
    expect(cache.size).toBe(3);
    expect(cache.get("x999", T0)).toBeDefined();
  });

  it("default-sized cache never exceeds its bound under churn", () => {
    const cache = new TokenCache({ capacity: 10_000, clockSkewMs: 0 });
    const exp = T0 / 1000 + 600;
    for (let i = 0; i < 25_000; i++) {
      cache.set(`t${i}`, claims(exp));
      if (i % 3 === 0) cache.get(`t${i >> 1}`, T0);
    }
    expect(cache.size).toBe(10_000);
  });

  it("capacity 0 caches nothing; clear() empties it", () => {
    const off = new TokenCache({ capacity: 0, clockSkewMs: 0 });
    expect(off.set("t", claims(T0 / 1000 + 60)).ok).toBe(true);
    expect(off.get("t", T0)).toBeUndefined();
    const on = new TokenCache({ capacity: 5, clockSkewMs: 0 });
    on.set("t", claims(T0 / 1000 + 60));
    on.clear();
    expect(on.get("t", T0)).toBeUndefined();
  });
});
