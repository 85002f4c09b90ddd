// The access token lives in memory only: a browser-like global scope with storage spies
// sees no write during a whole session, across two tabs, a refresh, a pushed logout.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createInProcessLock, type SessionClient } from "../../../src/client/index.js";
import { RevocationReason } from "../../../src/gen/sessionauthority/v1/authority_pb.js";
import { browserClient, record, uniqueChannel } from "./support/clients.js";
import { FakeAuthority } from "./support/fake-authority.js";
import { FakeTime, until } from "./support/fake-time.js";

const MIN = 60_000;
const open: SessionClient<string>[] = [];
let writes: string[];
let listeners: Map<string, () => void>;
let visibility: "visible" | "hidden";

function spyStorage(name: string) {
  return {
    length: 0,
    key: () => null,
    getItem: () => null,
    setItem: (key: string) => writes.push(`${name}.setItem(${key})`),
    removeItem: (key: string) => writes.push(`${name}.removeItem(${key})`),
    clear: () => writes.push(`${name}.clear()`),
  };
}

beforeEach(() => {
  writes = [];
  listeners = new Map();
  visibility = "visible";
  vi.stubGlobal("localStorage", spyStorage("localStorage"));
  vi.stubGlobal("sessionStorage", spyStorage("sessionStorage"));
  vi.stubGlobal("indexedDB", { open: (name: string) => writes.push(`indexedDB.open(${name})`) });
  vi.stubGlobal("addEventListener", (type: string, fn: () => void) => listeners.set(`window:${type}`, fn));
  vi.stubGlobal("removeEventListener", (type: string) => listeners.delete(`window:${type}`));
  vi.stubGlobal("document", {
    get cookie() {
      return "";
    },
    set cookie(value: string) {
      writes.push(`document.cookie=${value}`);
    },
    get visibilityState() {
      return visibility;
    },
    addEventListener: (type: string, fn: () => void) => listeners.set(`document:${type}`, fn),
    removeEventListener: (type: string) => listeners.delete(`document:${type}`),
  });
});

afterEach(() => {
  for (const c of open.splice(0)) c.close();
  vi.unstubAllGlobals();
});

describe("client: tokens stay in memory", () => {
  it("writes no storage, no cookie, no IndexedDB through sign-in, refresh, tab sharing, API calls and a pushed logout", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const channelName = uniqueChannel();
    const lock = createInProcessLock();
    const a = browserClient(auth, time, { channelName, lock, watchSession: true });
    const b = browserClient(auth, time, { channelName, lock, watchSession: true });
    open.push(a, b);
    const logB = record(b);
    const { sessionId, handoffCode } = auth.createHandoff();
    await a.signIn(handoffCode);
    await until(() => b.session !== undefined && auth.openWatchers().length === 1, "tab B and the stream");
    await time.advance(14 * MIN);
    await until(() => b.session!.accessTokenExpiresAt === a.session!.accessTokenExpiresAt, "tab B to take the refreshed token");
    await b.listDevices();
    auth.end(sessionId, RevocationReason.ADMIN_ACTION);
    await until(() => logB.of("logged-out").length === 1, "the pushed logout");
    expect(writes).toEqual([]);
    expect(auth.calls.refresh).toBe(1);
  });

  it("a page becoming visible refreshes at once when a refresh is due (timers of hidden tabs are throttled)", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const client = browserClient(auth, time);
    open.push(client);
    await client.signIn(auth.createHandoff().handoffCode);
    visibility = "hidden";
    time.jump(14.5 * MIN); // the refresh timer has not run: throttled
    listeners.get("document:visibilitychange")!();
    expect(auth.calls.refresh).toBe(0);
    visibility = "visible";
    listeners.get("document:visibilitychange")!();
    await until(() => auth.calls.refresh === 1, "the refresh");
    listeners.get("window:online")!(); // nothing due any more
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(auth.calls.refresh).toBe(1);
    client.close();
    expect(listeners.size).toBe(0);
  });
});
