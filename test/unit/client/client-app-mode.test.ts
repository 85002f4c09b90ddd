// App/Node mode (refresh token in a storage adapter, Refresh RPC) and the device helpers.
import { afterEach, describe, expect, it } from "vitest";
import {
  createMemoryRefreshTokenStorage,
  createRpcRefresher,
  createSessionClient,
  SessionClientError,
  type RefreshTokenStorage,
  type RpcSignIn,
  type SessionClient,
} from "../../../src/client/index.js";
import { record } from "./support/clients.js";
import { FakeAuthority } from "./support/fake-authority.js";
import { FakeTime } from "./support/fake-time.js";

const MIN = 60_000;
const open: SessionClient<RpcSignIn>[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

/** A storage adapter that remembers every write. */
function spyStorage(): RefreshTokenStorage & { writes: string[]; clears: number } {
  const inner = createMemoryRefreshTokenStorage();
  const spy = {
    writes: [] as string[],
    clears: 0,
    get: () => inner.get(),
    set: async (token: string) => {
      spy.writes.push(token);
      await inner.set(token);
    },
    clear: async () => {
      spy.clears++;
      await inner.clear();
    },
  };
  return spy;
}

function appClient(auth: FakeAuthority, time: FakeTime, storage: RefreshTokenStorage) {
  const client = createSessionClient<RpcSignIn>({
    transport: auth.transport,
    refresher: createRpcRefresher({ transport: auth.transport, storage }),
    clock: time,
    timers: time,
    random: () => 0.5,
    channelName: false,
    watchSession: false,
  });
  open.push(client);
  return client;
}

async function signedInApp() {
  const time = new FakeTime();
  const auth = new FakeAuthority(time);
  const storage = spyStorage();
  const client = appClient(auth, time, storage);
  const log = record(client);
  const created = auth.createDirect("bob");
  await client.signIn(created);
  return { time, auth, storage, client, log, sessionId: created.sessionId };
}

describe("client, app mode: Refresh RPC with a storage adapter", () => {
  it("signIn keeps the refresh token in the storage and the access token in memory", async () => {
    const { auth, storage, client, sessionId } = await signedInApp();
    const s = auth.sessions.get(sessionId)!;
    expect(storage.writes).toEqual([s.current.refreshToken]);
    expect(await client.getAccessToken()).toBe(s.current.accessToken);
    expect(client.session).toMatchObject({ sessionId, userId: "bob", sessionExpiresAt: s.sessionExpiresAt });
  });

  it("signIn also takes the Connect JSON form of the response (RFC 3339 timestamps)", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const client = appClient(auth, time, createMemoryRefreshTokenStorage());
    const created = auth.createDirect("bob");
    const iso = (t: { seconds: bigint }) => new Date(Number(t.seconds) * 1000).toISOString();
    const json = {
      sessionId: created.sessionId,
      tokens: {
        accessToken: created.tokens.accessToken,
        accessTokenExpiresAt: iso(created.tokens.accessTokenExpiresAt),
        refreshToken: created.tokens.refreshToken,
        refreshTokenExpiresAt: iso(created.tokens.refreshTokenExpiresAt),
      },
      sessionExpiresAt: iso(created.sessionExpiresAt),
    };
    expect(await client.signIn(JSON.parse(JSON.stringify(json)))).toMatchObject({
      sessionId: created.sessionId,
      accessTokenExpiresAt: time.now() + 15 * MIN,
    });
  });

  it("refreshes over the RPC ahead of expiry and stores each rotated refresh token (never an access token)", async () => {
    const { time, auth, storage, client, sessionId } = await signedInApp();
    await time.advance(14 * MIN);
    expect(auth.calls.rpcRefresh).toBe(1);
    expect(auth.calls.refresh).toBe(0); // no cookie endpoint in app mode
    const s = auth.sessions.get(sessionId)!;
    expect(storage.writes).toHaveLength(2);
    expect(storage.writes.at(-1)).toBe(s.current.refreshToken);
    expect(await client.getAccessToken()).toBe(s.current.accessToken);
    for (const written of storage.writes) expect(written).not.toMatch(/^ey/); // JWTs start with "ey"
  });

  it("resume() on a new start continues from the stored refresh token", async () => {
    const { time, auth, storage, sessionId } = await signedInApp();
    const restarted = appClient(auth, time, storage);
    expect(await restarted.resume()).toMatchObject({ sessionId, userId: "bob" });
    expect(auth.calls.rpcRefresh).toBe(1);
  });

  it("resume() with an empty storage answers undefined without a request", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const client = appClient(auth, time, createMemoryRefreshTokenStorage());
    expect(await client.resume()).toBeUndefined();
    expect(auth.calls.rpcRefresh).toBe(0);
  });

  it("a reused refresh token ends the session: logged-out refresh_token_reused, storage cleared", async () => {
    const { time, auth, storage, client, log, sessionId } = await signedInApp();
    const stolen = (await storage.get())!;
    const thief = appClient(auth, time, createMemoryRefreshTokenStorage(stolen));
    await thief.resume();
    await time.advance(14 * MIN); // well past the grace window
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "refresh_token_reused", sessionId })]);
    expect(client.session).toBeUndefined();
    expect(await storage.get()).toBeUndefined();
  });

  it("signIn refuses a response without tokens (a BROWSER_HANDOFF session) and changes nothing", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const storage = spyStorage();
    const client = appClient(auth, time, storage);
    const error = await client.signIn({ sessionId: "s1", tokens: undefined, sessionExpiresAt: undefined } as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionClientError);
    expect(error).toMatchObject({ code: "bad_response" });
    expect(storage.writes).toEqual([]);
    expect(client.session).toBeUndefined();
  });
});

describe("client: device management", () => {
  it("listDevices lists the user's sessions with the current one marked", async () => {
    const { auth, client, sessionId } = await signedInApp();
    const other = auth.createDirect("bob", "Tablet");
    auth.createDirect("carol", "Not bob's");
    const devices = await client.listDevices();
    expect(devices.map((d) => [d.sessionId, d.deviceName, d.current])).toEqual([
      [sessionId, "Phone", true],
      [other.sessionId, "Tablet", false],
    ]);
    expect(devices[0]).toMatchObject({ deviceId: `dev-${sessionId}`, ipAddress: "203.0.113.7", clientId: "default" });
    expect(devices[0]!.absoluteExpiresAt).toBe(auth.sessions.get(sessionId)!.sessionExpiresAt);
    expect(auth.bearers).toEqual([await client.getAccessToken()]);
  });

  it("listDevices refreshes once and retries once when its token is refused", async () => {
    const { auth, client } = await signedInApp();
    auth.refuseBearerTimes = 1;
    expect(await client.listDevices()).toHaveLength(1);
    expect(auth.calls.rpcRefresh).toBe(1);
    expect(auth.calls.listSessions).toBe(2);
    auth.refuseBearer = true;
    await expect(client.listDevices()).rejects.toMatchObject({ code: "unauthenticated" });
    expect(auth.calls.rpcRefresh).toBe(2);
    expect(auth.calls.listSessions).toBe(4);
  });

  it("endDevice ends another session (scope SESSION); an unknown one is not_found", async () => {
    const { auth, client, log } = await signedInApp();
    const tablet = auth.createDirect("bob", "Tablet");
    expect(await client.endDevice(tablet.sessionId)).toBe(1);
    expect(auth.sessions.get(tablet.sessionId)!.ended).toBeDefined();
    expect(client.session).toBeDefined();
    await expect(client.endDevice("s-unknown")).rejects.toMatchObject({ code: "not_found" });
    await expect(client.endDevice("")).rejects.toMatchObject({ code: "invalid_argument" });
    expect(log.of("logged-out")).toEqual([]);
  });

  it("endDevice of the current session is logout()", async () => {
    const { auth, client, log, storage, sessionId } = await signedInApp();
    expect(await client.endDevice(sessionId)).toBe(1);
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "logout", sessionId })]);
    expect(auth.sessions.get(sessionId)!.ended).toBeDefined();
    expect(await storage.get()).toBeUndefined();
  });

  it("endOtherDevices ends every other session (scope OTHERS) and keeps this one", async () => {
    const { auth, client, sessionId } = await signedInApp();
    const a = auth.createDirect("bob", "Tablet");
    const b = auth.createDirect("bob", "TV");
    expect(await client.endOtherDevices()).toBe(2);
    expect([a, b].map((x) => auth.sessions.get(x.sessionId)!.ended !== undefined)).toEqual([true, true]);
    expect(auth.sessions.get(sessionId)!.ended).toBeUndefined();
    expect(client.session).toBeDefined();
  });

  it("logoutEverywhere ends all sessions (scope ALL), clears the storage and logs out with allSessions", async () => {
    const { auth, client, log, storage, sessionId } = await signedInApp();
    const tablet = auth.createDirect("bob", "Tablet");
    expect(await client.logoutEverywhere()).toBe(2);
    expect([sessionId, tablet.sessionId].every((id) => auth.sessions.get(id)!.ended)).toBe(true);
    expect(log.of("logged-out")).toEqual([{ reason: "logout", message: "You signed out.", sessionId, allSessions: true }]);
    expect(await storage.get()).toBeUndefined();
  });

  it("logout() (scope CURRENT over the RPC) ends only this session and clears the storage", async () => {
    const { auth, client, storage, sessionId } = await signedInApp();
    const tablet = auth.createDirect("bob", "Tablet");
    await client.logout();
    expect(auth.calls.logoutRpc).toBe(1);
    expect(auth.sessions.get(sessionId)!.ended).toBeDefined();
    expect(auth.sessions.get(tablet.sessionId)!.ended).toBeUndefined();
    expect(await storage.get()).toBeUndefined();
    await expect(client.listDevices()).rejects.toMatchObject({ code: "signed_out" });
  });
});
