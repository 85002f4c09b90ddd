import { afterEach, describe, expect, it } from "vitest";
import { createInProcessLock, createWebLocksLock, type SessionClient, type WebLockManager } from "../../../src/client/index.js";
import { browserClient, twoTabs, uniqueChannel } from "./support/clients.js";
import { FakeAuthority } from "./support/fake-authority.js";
import { FakeTime, settle, until } from "./support/fake-time.js";

const MIN = 60_000;
const open: SessionClient<string>[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

/** Web Locks semantics (exclusive, queued, ifAvailable, abort while queued) for a test. */
class FakeLockManager implements WebLockManager {
  private readonly held = new Set<string>();
  private readonly queues = new Map<string, Array<() => void>>();

  async request(name: string, options: { ifAvailable?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => unknown): Promise<unknown> {
    if (options.ifAvailable) return this.held.has(name) ? callback(null) : this.run(name, callback);
    if (options.signal?.aborted) throw options.signal.reason;
    if (this.held.has(name)) {
      await new Promise<void>((resolve, reject) => {
        const queue = this.queues.get(name) ?? [];
        this.queues.set(name, queue);
        queue.push(resolve);
        options.signal?.addEventListener("abort", () => {
          queue.splice(queue.indexOf(resolve), 1);
          reject(options.signal!.reason);
        });
      });
    }
    return this.run(name, callback);
  }

  private async run(name: string, callback: (lock: unknown) => unknown): Promise<unknown> {
    this.held.add(name);
    try {
      return await callback({ name });
    } finally {
      const next = this.queues.get(name)?.shift();
      if (next) next(); // handed over: stays held
      else this.held.delete(name);
    }
  }
}

function holdRefreshes(auth: FakeAuthority): () => void {
  let release!: () => void;
  auth.refreshGate = new Promise((resolve) => (release = resolve));
  return () => {
    auth.refreshGate = undefined;
    release();
  };
}

describe("client: tabs", () => {
  it("a tab without a session takes the session another tab signed in (token over BroadcastChannel, no request)", async () => {
    const { auth, a, b, logB, sessionId } = await twoTabs(open);
    expect(auth.calls.refresh).toBe(0);
    expect(await b.getAccessToken()).toBe(await a.getAccessToken());
    expect(logB.of("refreshed")).toEqual([{ session: b.session, source: "other-tab" }]);
    expect(b.session!.sessionId).toBe(sessionId);
  });

  it.each([
    ["an in-process lock", () => createInProcessLock()],
    ["Web Locks", () => createWebLocksLock(new FakeLockManager())],
  ])("two tabs refreshing at once make one refresh and both end with the new token, no logout (%s)", async (_, makeLock) => {
    const { auth, a, b, logA, logB, sessionId } = await twoTabs(open, makeLock());
    const release = holdRefreshes(auth);
    const both = Promise.all([a.refresh(), b.refresh()]);
    await settle();
    expect(auth.calls.refresh).toBe(1); // B waits on the lock instead of refreshing
    release();
    await both;
    const current = auth.sessions.get(sessionId)!.current.accessToken;
    expect(await a.getAccessToken()).toBe(current);
    expect(await b.getAccessToken()).toBe(current);
    expect(auth.calls.refresh).toBe(1);
    expect(logB.of("refreshed").at(-1)!.source).toBe("other-tab");
    expect([...logA.of("logged-out"), ...logB.of("logged-out")]).toEqual([]);
  });

  it("planned refreshes due in both tabs at the same moment make one refresh", async () => {
    const { time, auth, a, b, sessionId } = await twoTabs(open);
    await time.advance(14 * MIN);
    expect(auth.calls.refresh).toBe(1);
    await until(() => b.session!.accessTokenExpiresAt === a.session!.accessTokenExpiresAt, "tab B to take the new token");
    expect(await b.getAccessToken()).toBe(auth.sessions.get(sessionId)!.current.accessToken);
    await time.advance(14 * MIN);
    expect(auth.calls.refresh).toBe(2);
  });

  it("without a shared lock both tabs refresh, and the grace window gives both the same pair (no logout)", async () => {
    const { auth, a, b, logA, logB, sessionId } = await twoTabs(open, [createInProcessLock(), createInProcessLock()]);
    const release = holdRefreshes(auth);
    const both = Promise.all([a.refresh(), b.refresh()]);
    await settle();
    expect(auth.calls.refresh).toBe(2);
    release();
    await both;
    const current = auth.sessions.get(sessionId)!.current.accessToken;
    expect([await a.getAccessToken(), await b.getAccessToken()]).toEqual([current, current]);
    expect([...logA.of("logged-out"), ...logB.of("logged-out")]).toEqual([]);
  });

  it.each([
    ["an in-process lock", () => createInProcessLock()],
    ["Web Locks", () => createWebLocksLock(new FakeLockManager())],
  ])("a lock holder that never releases: the refresh goes ahead after the lock timeout (%s)", async (_, makeLock) => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const lock = makeLock();
    const channelName = uniqueChannel();
    const warnings: string[] = [];
    const client = browserClient(auth, time, { channelName, lock, lockTimeoutMs: 3000, logger: { debug: () => {}, warn: (m) => warnings.push(m) } });
    open.push(client);
    await client.signIn(auth.createHandoff().handoffCode);
    await lock.acquire(`${channelName}:refresh`, new AbortController().signal); // a crashed tab, say; never released

    const refreshed = client.refresh();
    await time.advance(2999);
    expect(auth.calls.refresh).toBe(0);
    await time.advance(1);
    await refreshed;
    expect(auth.calls.refresh).toBe(1);
    expect(warnings).toEqual(["refresh lock not acquired in time; refreshing without it"]);
    // And again later: still no deadlock, one refresh per need.
    await time.advance(14 * MIN + 3000);
    expect(auth.calls.refresh).toBe(2);
  });

  it("a lock that ignores its abort signal cannot hold a refresh past the lock timeout", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const client = browserClient(auth, time, { lock: { acquire: () => new Promise(() => {}) }, lockTimeoutMs: 2000 });
    open.push(client);
    await client.signIn(auth.createHandoff().handoffCode);
    const refreshed = client.refresh();
    await time.advance(2000);
    await refreshed;
    expect(auth.calls.refresh).toBe(1);
  });

  it("a tab whose lock wait is answered by the other tab's token drops out of the lock queue", async () => {
    const lock = createWebLocksLock(new FakeLockManager());
    const { auth, a, b, channelName } = await twoTabs(open, lock);
    const release = holdRefreshes(auth);
    const both = Promise.all([a.refresh(), b.refresh()]);
    await settle();
    release();
    await both;
    // The lock is free again: a third party gets it at once.
    const handle = await lock.acquire(`${channelName}:refresh`, new AbortController().signal);
    expect(handle.contended).toBe(false);
    handle.release();
  });

  it("logout in one tab logs the other out with the same reason", async () => {
    const { a, b, logB, sessionId } = await twoTabs(open);
    await a.logout();
    await until(() => b.session === undefined, "tab B to hear of the logout");
    expect(logB.of("logged-out")).toEqual([{ reason: "logout", message: "You signed out.", sessionId, allSessions: false }]);
  });

  it("a session that ended is not revived by a late token broadcast", async () => {
    const { a, b, sessionId, channelName } = await twoTabs(open);
    const s = a.session!;
    const late = { ...s, accessToken: await a.getAccessToken(), accessTokenExpiresAt: s.accessTokenExpiresAt + 10 * MIN };
    await a.logout();
    await until(() => b.session === undefined, "tab B to hear of the logout");
    const stray = new BroadcastChannel(channelName);
    stray.postMessage({ v: 1, type: "grant", grant: late });
    stray.close();
    await settle();
    expect(b.session).toBeUndefined();
    expect(a.session).toBeUndefined();
    expect(late.sessionId).toBe(sessionId);
  });

  it("ignores malformed channel messages", async () => {
    const { b, sessionId, channelName } = await twoTabs(open);
    const stray = new BroadcastChannel(channelName);
    for (const m of [null, "x", { v: 2, type: "grant" }, { v: 1, type: "grant", grant: { sessionId: "s9" } }, { v: 1, type: "logged-out", event: {} }]) {
      stray.postMessage(m);
    }
    stray.close();
    await settle();
    expect(b.session?.sessionId).toBe(sessionId);
  });
});
