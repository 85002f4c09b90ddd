import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { SessionClientError, type SessionClient } from "../../../src/client/index.js";
import { SessionAuthorityService } from "../../../src/gen/sessionauthority/v1/authority_pb.js";
import { browserClient, record } from "./support/clients.js";
import { FakeAuthority } from "./support/fake-authority.js";
import { FakeTime } from "./support/fake-time.js";

const MIN = 60_000;
const open: SessionClient<string>[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

function setup(options: Parameters<typeof browserClient>[2] = {}, authOptions: ConstructorParameters<typeof FakeAuthority>[1] = {}) {
  const time = new FakeTime();
  const auth = new FakeAuthority(time, authOptions);
  const client = browserClient(auth, time, options);
  open.push(client);
  return { time, auth, client, log: record(client) };
}

async function signedIn(options: Parameters<typeof browserClient>[2] = {}, authOptions: ConstructorParameters<typeof FakeAuthority>[1] = {}) {
  const s = setup(options, authOptions);
  const { sessionId, handoffCode } = s.auth.createHandoff();
  await s.client.signIn(handoffCode);
  return { ...s, sessionId };
}

/** An API server: accepts exactly the session's current access token. */
function apiFetch(auth: FakeAuthority, sessionId: string) {
  const seen: string[] = [];
  const api = async (request: Request) => {
    const token = request.headers.get("authorization")?.replace(/^Bearer /, "") ?? "";
    seen.push(token);
    const ok = !auth.refuseBearer && auth.sessions.get(sessionId)?.current.accessToken === token;
    return new Response(ok ? "ok" : "no", { status: ok ? 200 : 401 });
  };
  // One fetch for the client: /auth/v1 goes to the authority, the rest to the API.
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    return new URL(request.url).pathname.startsWith("/auth/v1/") ? auth.fetch(request) : api(request);
  };
  return { fetch, seen };
}

/** A client on a signed-in session whose fetch reaches the API as well, resumed; with the refreshes made so far. */
async function fetchingClient() {
  const { auth, time, sessionId } = await signedIn();
  const api = apiFetch(auth, sessionId);
  const client = browserClient(auth, time, { fetch: api.fetch });
  open.push(client);
  await client.resume();
  return { auth, time, sessionId, api, client, refreshesBefore: auth.calls.refresh };
}

describe("client: sign-in and the refresh schedule", () => {
  it("signs in with the handoff code over POST /auth/v1/session with credentials and the CSRF header", async () => {
    const { auth, client, log } = setup();
    const { sessionId, handoffCode } = auth.createHandoff();
    expect(await client.signIn(handoffCode)).toMatchObject({ sessionId, userId: "alice", clockSkewMs: 0 });
    expect(client.session).toMatchObject({ sessionId, userId: "alice" });
    expect(await client.getAccessToken()).toBe(auth.sessions.get(sessionId)!.current.accessToken);
    expect(auth.httpRequests).toHaveLength(1);
    const [request] = auth.httpRequests;
    expect(request).toMatchObject({ path: "/auth/v1/session", method: "POST" });
    expect(JSON.parse(request!.body)).toEqual({ handoffCode });
    expect(request!.headers["sa-csrf"]).toBe("1");
    expect(request!.headers["content-type"]).toBe("application/json");
    expect(auth.browser.value).toBe(auth.sessions.get(sessionId)!.current.refreshToken); // the cookie reached the jar
    expect(log.of("refreshed")).toEqual([{ session: client.session, source: "sign-in" }]);
    // The code is single use: a second sign-in with it fails and changes nothing.
    await expect(client.signIn(handoffCode)).rejects.toMatchObject({ code: "unauthenticated", status: 401 });
    expect(client.session).toMatchObject({ sessionId });
  });

  it.each([
    { random: 0, offset: -10_000 },
    { random: 0.5, offset: 0 },
    { random: 0.999, offset: 9_980 },
  ])("refreshes at expiry − margin ± jitter (random $random → $offset ms)", async ({ random, offset }) => {
    const { time, auth, client } = await signedIn({ random: () => random, refreshMarginMs: MIN, refreshJitterMs: 10_000 });
    const expiresAt = client.session!.accessTokenExpiresAt;
    const due = expiresAt - MIN + offset;
    await time.advanceTo(due - 1);
    expect(auth.calls.refresh).toBe(0);
    await time.advance(1);
    expect(auth.calls.refresh).toBe(1);
    const body = auth.httpRequests.at(-1)!;
    expect(body.path).toBe("/auth/v1/refresh");
    expect(body.headers["sa-csrf"]).toBe("1");
    expect(body.headers.cookie).toMatch(/^__Secure-sa-refresh=/); // sent because of credentials: "include"
    expect(client.session!.accessTokenExpiresAt).toBe(Math.floor(time.now() / 1000) * 1000 + 15 * MIN); // JWT exp: whole seconds
  });

  it("keeps refreshing every lifetime − margin while the page is open", async () => {
    const { time, auth } = await signedIn();
    await time.advance(60 * MIN);
    expect(auth.calls.refresh).toBe(4); // at 14, 28, 42, 56 min
  });

  it("refreshes a token shorter than twice the margin at half its life, not in a loop", async () => {
    const { time, auth } = await signedIn({ refreshMarginMs: 5 * MIN }, { accessTtlMs: 2 * MIN });
    await time.advance(MIN - 1);
    expect(auth.calls.refresh).toBe(0);
    await time.advance(1);
    expect(auth.calls.refresh).toBe(1);
    await time.advance(MIN);
    expect(auth.calls.refresh).toBe(2);
  });

  it("corrects for a client clock that is off: schedules on the authority's time", async () => {
    // The authority's clock is 20 min ahead: every token would look expired on arrival.
    const { time, auth, client } = await signedIn({}, { clockOffsetMs: 20 * MIN });
    expect(client.session!.clockSkewMs).toBe(20 * MIN);
    expect(client.session!.accessTokenExpiresAt).toBe(time.now() + 15 * MIN);
    await client.getAccessToken(); // valid on the corrected clock: no refresh
    expect(auth.calls.refresh).toBe(0);
    await time.advance(14 * MIN);
    expect(auth.calls.refresh).toBe(1);
  });

  it("resume() picks up the cookie's session, and answers undefined (no event) when there is none", async () => {
    const { auth, client, log } = setup();
    expect(await client.resume()).toBeUndefined();
    expect(auth.calls.refresh).toBe(1);
    expect(log.events).toEqual([]);
    await expect(client.getAccessToken()).rejects.toMatchObject({ code: "signed_out" });

    const { handoffCode, sessionId } = auth.createHandoff();
    const otherTab = browserClient(auth, new FakeTime()); // same browser (cookie jar), no tab channel
    open.push(otherTab);
    await otherTab.signIn(handoffCode);
    expect(await client.resume()).toMatchObject({ sessionId });
  });
});

describe("client: refresh on UNAUTHENTICATED, once", () => {
  it("interceptor: a refused call refreshes once and is retried once with the new token", async () => {
    const { auth, client, sessionId } = await signedIn();
    const rpc = createClient(SessionAuthorityService, auth.transportWith([client.interceptor]));
    const before = await client.getAccessToken();
    auth.refuseBearerTimes = 1;
    const answer = await rpc.listSessions({});
    expect(answer.sessions.map((s) => s.sessionId)).toEqual([sessionId]);
    expect(auth.calls.refresh).toBe(1);
    expect(auth.calls.listSessions).toBe(2);
    const after = auth.sessions.get(sessionId)!.current.accessToken;
    expect(auth.bearers).toEqual([before, after]);
  });

  it("interceptor: refused again after the refresh → the error, not a second refresh or retry", async () => {
    const { auth, client } = await signedIn();
    const rpc = createClient(SessionAuthorityService, auth.transportWith([client.interceptor]));
    auth.refuseBearer = true;
    const error = await rpc.listSessions({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(auth.calls.listSessions).toBe(2);
    expect(auth.calls.refresh).toBe(1);
  });

  it("interceptor: leaves calls that carry their own authorization alone", async () => {
    const { auth, client } = await signedIn();
    const rpc = createClient(SessionAuthorityService, auth.transportWith([client.interceptor]));
    auth.refuseBearer = true;
    await expect(rpc.listSessions({}, { headers: { authorization: "ApiKey k" } })).rejects.toThrow();
    expect(auth.bearers).toEqual([""]);
    expect(auth.calls.refresh).toBe(0);
  });

  it("fetch wrapper: attaches the token; a 401 refreshes once and retries once, body included", async () => {
    const { auth, api, client, refreshesBefore } = await fetchingClient();
    auth.refuseBearer = true;
    const refused = await client.fetch("https://api.example.test/orders", { method: "POST", body: "x" });
    expect(refused.status).toBe(401);
    expect(api.seen).toHaveLength(2);
    expect(auth.calls.refresh - refreshesBefore).toBe(1);

    auth.refuseBearer = false;
    const stale = await client.getAccessToken();
    auth.useCookieElsewhere(); // the session rotated (grace window): the held token is no longer the current one
    const ok = await client.fetch(new Request("https://api.example.test/orders", { method: "POST", body: "payload" }));
    expect(ok.status).toBe(200);
    expect(api.seen.slice(-2)).toEqual([stale, await client.getAccessToken()]);
  });

  it("20 concurrent calls with an expired token share exactly one refresh", async () => {
    const { auth, time, sessionId, api, client, refreshesBefore } = await fetchingClient();
    time.jump(20 * MIN); // asleep past expiry: no timer ran
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => client.fetch(`https://api.example.test/item/${i}`)));
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(auth.calls.refresh - refreshesBefore).toBe(1);
    const token = auth.sessions.get(sessionId)!.current.accessToken;
    expect(new Set(api.seen)).toEqual(new Set([token]));
  });

  it("20 concurrent Connect calls with an expired token share exactly one refresh", async () => {
    const { auth, time, client } = await signedIn();
    const rpc = createClient(SessionAuthorityService, auth.transportWith([client.interceptor]));
    time.jump(20 * MIN);
    await Promise.all(Array.from({ length: 20 }, () => rpc.listSessions({})));
    expect(auth.calls.refresh).toBe(1);
    expect(auth.calls.listSessions).toBe(20);
  });
});

describe("client: session end", () => {
  it("logged-out with reason session_ended when a refresh is refused that way", async () => {
    const { time, auth, client, sessionId, log } = await signedIn();
    auth.sessions.get(sessionId)!.ended = { code: "session_ended", reason: 3 };
    await time.advance(14 * MIN);
    expect(log.of("logged-out")).toEqual([
      { reason: "session_ended", message: "Your session has ended. Please sign in again.", sessionId, allSessions: false },
    ]);
    expect(client.session).toBeUndefined();
    await expect(client.getAccessToken()).rejects.toMatchObject({ code: "signed_out" });
    expect(time.pendingAt()).toEqual([]); // nothing left scheduled
  });

  it("logged-out with reason refresh_token_reused when the cookie was used elsewhere after the grace window", async () => {
    const { time, auth, client, sessionId, log } = await signedIn();
    auth.useCookieElsewhere();
    await time.advance(14 * MIN);
    expect(auth.sessions.get(sessionId)!.ended).toBeDefined();
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "refresh_token_reused", sessionId })]);
    expect(log.of("logged-out")[0]!.message).toMatch(/used from somewhere else/);
    expect(client.session).toBeUndefined();
  });

  it("an authority outage is retried with backoff, keeps the token meanwhile, and recovers without logging out", async () => {
    const { time, auth, client, log } = await signedIn();
    const token = await client.getAccessToken();
    auth.refreshFailure = { status: 503, code: "store_unavailable" };
    await time.advance(14 * MIN);
    await time.advance(750 + 1500 + 3000);
    expect(auth.calls.refresh).toBe(4);
    expect(log.of("error").map((e) => [e.during, e.retryInMs, (e.error as SessionClientError).code])).toEqual([
      ["refresh", 750, "unavailable"],
      ["refresh", 1500, "unavailable"],
      ["refresh", 3000, "unavailable"],
      ["refresh", 6000, "unavailable"],
    ]);
    expect(await client.getAccessToken()).toBe(token);
    auth.refreshFailure = undefined;
    await time.advance(6000);
    expect(auth.calls.refresh).toBe(5);
    expect(await client.getAccessToken()).not.toBe(token);
    expect(log.of("logged-out")).toEqual([]);
  });

  it("expiring fires the configured lead before the session's absolute end, then logged-out expired at the end", async () => {
    const { time, auth, client, sessionId, log } = await signedIn({ expiringWarningMs: 2 * MIN }, { lifetimeMs: 40 * MIN });
    const endsAt = client.session!.sessionExpiresAt;
    await time.advanceTo(endsAt - 2 * MIN - 1);
    expect(log.of("expiring")).toEqual([]);
    await time.advance(1);
    expect(log.of("expiring")).toEqual([{ sessionId, endsAt, inMs: 2 * MIN, cause: "lifetime" }]);
    expect(log.of("logged-out")).toEqual([]);
    await time.advanceTo(endsAt);
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "expired", sessionId })]);
    // A token that dies with the session is not refreshed in a loop at the end.
    expect(auth.calls.refresh).toBe(2);
    expect(log.of("expiring")).toHaveLength(1);
    expect(log.events.map((e) => e.type).filter((t) => t !== "refreshed")).toEqual(["expiring", "logged-out"]);
  });

  it("a token capped at the session's end, in whole seconds (JWT exp), is not refreshed again and again before the end", async () => {
    // The session ends at …:00.250; the real authority's last tokens expire at …:00.000, just before it.
    const time = new FakeTime(Date.UTC(2026, 0, 1, 12) + 250);
    const auth = new FakeAuthority(time, { lifetimeMs: 40 * MIN });
    const client = browserClient(auth, time, { expiringWarningMs: 2 * MIN });
    open.push(client);
    const log = record(client);
    const { sessionId, handoffCode } = auth.createHandoff();
    await client.signIn(handoffCode);
    const endsAt = client.session!.sessionExpiresAt;
    expect(endsAt % 1000).toBe(250);
    // Refreshes at 14 and 28 min; the second brings a token that lives to the session's last whole second.
    await time.advanceTo(endsAt - 30 * 1000);
    expect(auth.calls.refresh).toBe(2);
    expect(client.session!.accessTokenExpiresAt).toBe(endsAt - 250);
    await time.advanceTo(endsAt - 2000);
    expect(auth.calls.refresh).toBe(2);
    await time.advanceTo(endsAt);
    expect(auth.calls.refresh).toBe(2);
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "expired", sessionId })]);
  });

  it("expiring (cause idle) when refreshes keep failing and the idle deadline nears", async () => {
    const { time, auth, client, log } = await signedIn({ expiringWarningMs: 3 * MIN, retryMaxMs: 60_000 }, { idleMs: 20 * MIN });
    auth.refreshFailure = { status: 503, code: "store_unavailable" };
    const endsAt = client.session!.refreshExpiresAt;
    await time.advanceTo(endsAt - 3 * MIN);
    expect(log.of("expiring")).toEqual([expect.objectContaining({ cause: "idle", endsAt })]);
    await time.advanceTo(endsAt);
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "expired" })]);
  });

  it("logout() ends the session at the authority (cookie cleared) and locally", async () => {
    const { auth, client, sessionId, log } = await signedIn();
    await client.logout();
    expect(auth.httpRequests.at(-1)).toMatchObject({ path: "/auth/v1/logout", body: JSON.stringify({ scope: "current" }) });
    expect(auth.browser.value).toBeUndefined();
    expect(auth.sessions.get(sessionId)!.ended).toBeDefined();
    expect(log.of("logged-out")).toEqual([{ reason: "logout", message: "You signed out.", sessionId, allSessions: false }]);
    expect(client.session).toBeUndefined();
  });

  it("logout() signs out locally at once, even when the authority never answers, and then says so", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    const never = new Promise<Response>(() => {});
    const fetch = (input: RequestInfo | URL, init?: RequestInit) =>
      new Request(input, init).url.endsWith("/auth/v1/logout") ? never : auth.fetch(input, init);
    const client = browserClient(auth, time, { fetch, requestTimeoutMs: 5000 });
    open.push(client);
    const log = record(client);
    await client.signIn(auth.createHandoff().handoffCode);
    const pending = client.logout().catch((e: unknown) => e);
    await time.advance(0);
    expect(client.session).toBeUndefined();
    expect(log.of("logged-out")).toEqual([expect.objectContaining({ reason: "logout" })]);
    await time.advance(5000);
    expect(await pending).toMatchObject({ code: "unavailable" });
  });
});

describe("client: requests never hang", () => {
  it("a refresh that never answers times out as unavailable and is retried", async () => {
    const { time, auth, client, log } = await signedIn({ requestTimeoutMs: 5000 });
    auth.refreshGate = new Promise(() => {});
    const pending = client.refresh().catch((e: unknown) => e);
    await time.advance(5000);
    expect(await pending).toMatchObject({ code: "unavailable" });
    expect(log.of("error")).toEqual([expect.objectContaining({ during: "refresh", retryInMs: 750 })]);
    expect(client.session).toBeDefined();
  });

  it("close() rejects what is pending and stops every timer", async () => {
    const { time, auth, client } = await signedIn();
    auth.refreshGate = new Promise(() => {});
    const pending = client.refresh();
    client.close();
    await expect(pending).rejects.toMatchObject({ code: "closed" });
    expect(time.pendingAt()).toEqual([]);
    await expect(client.getAccessToken()).rejects.toMatchObject({ code: "closed" });
  });
});
