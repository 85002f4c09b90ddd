import { randomBytes } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/shared/clock.js";
import { RevocationSet } from "../../src/verifier/revocation-set.js";

const T0 = 1_767_225_600_000;
const sec = (ms: number) => Math.floor(ms / 1000);
const claims = (over: Partial<{ jti: string; sid: string; sub: string; iat: number }> = {}) => ({
  jti: "jti-1", sid: "sid-1", sub: "user-1", iat: sec(T0), ...over,
});

describe("RevocationSet", () => {
  it("revokes by jti, by sid and by a user's notBefore, with the recorded reason", () => {
    const clock = new ManualClock(T0);
    const set = new RevocationSet();
    const exp = T0 + 60_000;
    expect(set.check(claims(), clock.now())).toBeUndefined();

    expect(set.apply({ kind: "token", jti: "jti-1", reason: 1, expiresAt: exp }, clock.now())).toBe(true);
    expect(set.check(claims(), clock.now())).toEqual(expect.objectContaining({ reason: 1 }));
    expect(set.check(claims({ jti: "jti-2" }), clock.now())).toBeUndefined();

    set.apply({ kind: "session", sid: "sid-9", reason: 2, expiresAt: exp }, clock.now());
    expect(set.check(claims({ jti: "x", sid: "sid-9" }), clock.now())).toEqual(expect.objectContaining({ reason: 2 }));
    expect(set.check(claims({ jti: "x", sid: "sid-8" }), clock.now())).toBeUndefined();

    set.apply({ kind: "user", userId: "user-7", notBefore: sec(T0), reason: 3, expiresAt: exp }, clock.now());
    const user7 = (iat: number) => set.check(claims({ jti: "x", sid: "y", sub: "user-7", iat }), clock.now());
    expect(user7(sec(T0) - 1)).toEqual(expect.objectContaining({ reason: 3 }));
    // Issued in the cut-off second or later: a token from after the logout.
    expect(user7(sec(T0))).toBeUndefined();
    expect(user7(sec(T0) + 5)).toBeUndefined();
    expect(set.check(claims({ jti: "x", sid: "y", sub: "user-8", iat: 0 }), clock.now())).toBeUndefined();

    expect(set.size()).toEqual({ tokens: 1, sessions: 1, users: 1 });
  });

  it("a user's notBefore only moves forward, and the entry lasts as long as the longest one", () => {
    const set = new RevocationSet();
    const user = (iat: number) => set.check(claims({ sub: "u", jti: "x", sid: "y", iat }), T0);
    set.apply({ kind: "user", userId: "u", notBefore: 200, reason: 3, expiresAt: T0 + 10_000 }, T0);
    set.apply({ kind: "user", userId: "u", notBefore: 100, reason: 4, expiresAt: T0 + 20_000 }, T0);
    expect(user(150)).toEqual(expect.objectContaining({ reason: 3 }));
    expect(set.check(claims({ sub: "u", jti: "x", sid: "y", iat: 150 }), T0 + 15_000)).toEqual(expect.objectContaining({ reason: 3 }));

    set.apply({ kind: "user", userId: "u", notBefore: 300, reason: 5, expiresAt: T0 + 5000 }, T0);
    expect(user(250)).toEqual(expect.objectContaining({ reason: 5 }));
    // The later cut-off kept the longer life of the earlier ones.
    expect(set.check(claims({ sub: "u", jti: "x", sid: "y", iat: 250 }), T0 + 19_999)).toBeDefined();
    expect(set.check(claims({ sub: "u", jti: "x", sid: "y", iat: 250 }), T0 + 20_000)).toBeUndefined();
  });

  it("drops entries once now >= expiresAt: lazily on lookup, in bulk on prune, and never stores expired ones", () => {
    const clock = new ManualClock(T0);
    const set = new RevocationSet();
    set.apply({ kind: "token", jti: "a", reason: 1, expiresAt: T0 + 1000 }, clock.now());
    set.apply({ kind: "token", jti: "b", reason: 1, expiresAt: T0 + 1000 }, clock.now());
    set.apply({ kind: "session", sid: "s", reason: 1, expiresAt: T0 + 2000 }, clock.now());
    set.apply({ kind: "user", userId: "u", notBefore: sec(T0) + 100, reason: 1, expiresAt: T0 + 3000 }, clock.now());
    set.apply({ kind: "token", jti: "old", reason: 1, expiresAt: T0 }, clock.now());
    expect(set.size()).toEqual({ tokens: 2, sessions: 1, users: 1 });

    clock.advance(999);
    expect(set.check(claims({ jti: "a" }), clock.now())).toBeDefined();
    clock.advance(1);
    expect(set.check(claims({ jti: "a" }), clock.now())).toBeUndefined();
    expect(set.size().tokens).toBe(1); // "a" went on lookup, "b" waits for prune
    expect(set.prune(clock.now())).toBe(1);
    expect(set.size()).toEqual({ tokens: 0, sessions: 1, users: 1 });

    clock.advance(2000);
    expect(set.prune(clock.now())).toBe(2);
    expect(set.size()).toEqual({ tokens: 0, sessions: 0, users: 0 });
  });

  it("keeps an entry until its expiry rounded up to the whole second, never less", () => {
    const set = new RevocationSet();
    set.apply({ kind: "session", sid: "s", reason: 4, expiresAt: T0 + 1500 }, T0);
    expect(set.check(claims({ sid: "s" }), T0 + 1999)).toEqual({ reason: 4 });
    expect(set.check(claims({ sid: "s" }), T0 + 2000)).toBeUndefined();
  });

  it("a repeated entry extends its life, never shortens it", () => {
    const set = new RevocationSet();
    set.apply({ kind: "session", sid: "s", reason: 1, expiresAt: T0 + 5000 }, T0);
    set.apply({ kind: "session", sid: "s", reason: 1, expiresAt: T0 + 1000 }, T0);
    expect(set.check(claims({ sid: "s" }), T0 + 4000)).toBeDefined();
    set.apply({ kind: "session", sid: "s", reason: 1, expiresAt: T0 + 9000 }, T0);
    expect(set.check(claims({ sid: "s" }), T0 + 8000)).toBeDefined();
  });

  it("refuses entries that lack what their kind needs", () => {
    const set = new RevocationSet();
    const exp = T0 + 1000;
    expect(set.apply({ kind: "token", reason: 1, expiresAt: exp }, T0)).toBe(false);
    expect(set.apply({ kind: "token", jti: "", reason: 1, expiresAt: exp }, T0)).toBe(false);
    expect(set.apply({ kind: "session", jti: "x", reason: 1, expiresAt: exp }, T0)).toBe(false);
    expect(set.apply({ kind: "user", userId: "u", reason: 1, expiresAt: exp }, T0)).toBe(false);
    expect(set.apply({ kind: "user", notBefore: 5, reason: 1, expiresAt: exp }, T0)).toBe(false);
    expect(set.apply({ kind: "bogus" as never, jti: "x", reason: 1, expiresAt: exp }, T0)).toBe(false);
    expect(set.apply({ kind: "token", jti: "x", reason: 1, expiresAt: Number.NaN }, T0)).toBe(false);
    expect(set.size()).toEqual({ tokens: 0, sessions: 0, users: 0 });
  });

  it("holds 100k entries in well under 50 MB and checks in O(1)", () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const set = new RevocationSet();
    gc();
    gc();
    const before = process.memoryUsage().heapUsed;
    const exp = T0 + 900_000;
    // The mix a busy authority produces: mostly tokens and sessions.
    for (let i = 0; i < 100_000; i++) {
      const id = randomBytes(16).toString("base64url"); // a real jti's shape
      if (i % 10 < 6) set.apply({ kind: "token", jti: id, reason: 1, expiresAt: exp + i }, T0);
      else if (i % 10 < 9) set.apply({ kind: "session", sid: id, reason: 2, expiresAt: exp + i }, T0);
      else set.apply({ kind: "user", userId: id, notBefore: sec(T0), reason: 3, expiresAt: exp + i }, T0);
    }
    gc();
    gc();
    const used = process.memoryUsage().heapUsed - before;
    expect(set.size()).toEqual({ tokens: 60_000, sessions: 30_000, users: 10_000 });
    expect(used).toBeLessThan(50 * 1024 * 1024);
    console.log(`revocation set: 100k entries ≈ ${(used / 1024 / 1024).toFixed(1)} MB`);

    const probe = claims({ jti: "nope", sid: "nope", sub: "nope" });
    const start = process.hrtime.bigint();
    for (let i = 0; i < 1_000_000; i++) set.check(probe, T0);
    const nsPerCheck = Number(process.hrtime.bigint() - start) / 1_000_000;
    expect(nsPerCheck).toBeLessThan(2000); // generous: a few hundred ns expected
  });
});
