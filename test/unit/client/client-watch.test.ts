import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterEach, describe, expect, it } from "vitest";
import type { SessionClient } from "../../../src/client/index.js";
import { RevocationReason } from "../../../src/gen/sessionauthority/v1/authority_pb.js";
import { browserClient, record, twoTabs } from "./support/clients.js";
import { FakeAuthority } from "./support/fake-authority.js";
import { FakeTime, settle, until } from "./support/fake-time.js";

const open: SessionClient<string>[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

async function watching(options: Parameters<typeof browserClient>[2] = {}) {
  const time = new FakeTime();
  const auth = new FakeAuthority(time);
  const client = browserClient(auth, time, { watchSession: true, ...options });
  open.push(client);
  const log = record(client);
  const { sessionId, handoffCode } = auth.createHandoff();
  await client.signIn(handoffCode);
  await until(() => auth.openWatchers().length === 1, "the WatchSession stream");
  return { time, auth, client, log, sessionId, watcher: () => auth.openWatchers()[0]! };
}

describe("client: WatchSession", () => {
  it("opens the stream with the Bearer token once signed in", async () => {
    const { auth, client } = await watching();
    expect(auth.calls.watch).toBe(1);
    expect(auth.bearers).toEqual([await client.getAccessToken()]);
  });

  it("a pushed SessionEnded logs out at once with the reason and the authority's message, and is not reconnected", async () => {
    const { time, auth, client, log, sessionId } = await watching();
    auth.end(sessionId, RevocationReason.PASSWORD_CHANGED, "You were signed out because your password changed.");
    await until(() => log.of("logged-out").length === 1, "logged-out"); // no fake time passes: pushed, not polled
    expect(log.of("logged-out")).toEqual([
      {
        reason: "revoked",
        revocationReason: "password_changed",
        message: "You were signed out because your password changed.",
        sessionId,
        allSessions: false,
      },
    ]);
    expect(client.session).toBeUndefined();
    await time.advance(10 * 60_000);
    expect(auth.calls.watch).toBe(1);
    expect(auth.calls.refresh).toBe(0); // nothing scheduled any more
  });

  it("an empty message gets the SDK's sentence for the reason", async () => {
    const { auth, log, sessionId } = await watching();
    auth.end(sessionId, RevocationReason.ADMIN_ACTION, "");
    await until(() => log.of("logged-out").length === 1, "logged-out");
    expect(log.of("logged-out")[0]).toMatchObject({ revocationReason: "admin_action", message: "An administrator signed you out." });
  });

  it("reconnects with backoff after the stream drops", async () => {
    const { time, auth, log, watcher } = await watching({ reconnectInitialMs: 1000 });
    watcher().drop();
    await until(() => log.of("error").length === 1, "the drop to be seen");
    expect(log.of("error")[0]).toMatchObject({ during: "watch", retryInMs: 750 });
    await time.advance(749);
    expect(auth.calls.watch).toBe(1);
    await time.advance(1);
    await until(() => auth.openWatchers().length === 1 && auth.calls.watch === 2, "the second stream");
    // A stream that started resets the backoff: the next drop waits the first delay again.
    watcher().end(); // closed without SessionEnded counts as a drop too
    await until(() => log.of("error").length === 2, "the close to be seen");
    expect(log.of("error")[1]).toMatchObject({ retryInMs: 750 });
    await time.advance(750);
    await until(() => auth.calls.watch === 3, "the third stream");
  });

  it("backs off exponentially while the authority keeps refusing to start the stream", async () => {
    const { time, auth, log, watcher } = await watching({ reconnectInitialMs: 1000, reconnectMaxMs: 4000 });
    auth.watchFailures = 4;
    watcher().drop();
    for (let i = 1; i <= 5; i++) {
      await until(() => log.of("error").length === i, `failure ${i}`);
      await time.advance(log.of("error")[i - 1]!.retryInMs!);
    }
    expect(log.of("error").map((e) => e.retryInMs)).toEqual([750, 1500, 3000, 3000, 3000]); // doubling, capped at reconnectMaxMs·[0.5, 1)
    await until(() => auth.openWatchers().length === 1, "the stream to come back");
    expect(auth.calls.watch).toBe(6);
  });

  it("reconnects at once when no message (not even a heartbeat) came for heartbeatTimeoutMs", async () => {
    const { time, auth, watcher } = await watching({ heartbeatTimeoutMs: 45_000 });
    await time.advance(30_000);
    watcher().push({ event: { case: "heartbeat", value: { at: timestampFromMs(time.now()) } } });
    await settle();
    await time.advance(44_999);
    expect(auth.calls.watch).toBe(1);
    await time.advance(1);
    await until(() => auth.calls.watch === 2 && auth.openWatchers().length === 1, "the reconnect");
    expect(auth.watchers[0]!.closed).toBe(true);
  });

  it("a refused stream (UNAUTHENTICATED) refreshes the token and reconnects", async () => {
    const { time, auth, log, watcher } = await watching({ reconnectInitialMs: 1000 });
    auth.refuseBearerTimes = 1;
    watcher().drop();
    await until(() => log.of("error").length === 1, "the drop");
    await time.advance(750); // reconnect: refused → refresh → reconnect after the next backoff step
    await until(() => log.of("error").length === 2, "the refusal");
    expect(log.of("error")[1]).toMatchObject({ retryInMs: 1500 });
    await time.advance(1500);
    await until(() => auth.openWatchers().length === 1 && auth.calls.watch === 3, "the stream after the refresh");
    expect(auth.calls.refresh).toBe(1);
    expect(log.of("logged-out")).toEqual([]);
  });

  it("a refused stream whose session is over ends in logged-out from the refresh", async () => {
    const { time, auth, log, watcher, sessionId } = await watching({ reconnectInitialMs: 1000 });
    auth.sessions.get(sessionId)!.ended = { code: "session_ended", reason: RevocationReason.ADMIN_ACTION };
    watcher().drop();
    await until(() => log.of("error").length === 1, "the drop");
    await time.advance(750);
    await until(() => log.of("logged-out").length === 1, "logged-out");
    expect(log.of("logged-out")[0]).toMatchObject({ reason: "session_ended", sessionId });
  });

  it("an authority without WatchSession: one error, no reconnect loop, another try after the next refresh", async () => {
    const time = new FakeTime();
    const auth = new FakeAuthority(time);
    auth.watchUnimplemented = true;
    const client = browserClient(auth, time, { watchSession: true });
    open.push(client);
    const log = record(client);
    await client.signIn(auth.createHandoff().handoffCode);
    await until(() => log.of("error").length === 1, "the error");
    expect(log.of("error")[0]).toMatchObject({ during: "watch", retryInMs: undefined, error: { code: "unsupported" } });
    await time.advance(13 * 60_000);
    expect(auth.calls.watch).toBe(1);
    await time.advance(60_000); // the refresh at 14 min restarts the watch
    await until(() => auth.calls.watch === 2, "the second try");
    expect(client.session).toBeDefined();
  });

  it("another device of the user ending is reported as device-ended", async () => {
    const { auth, log, client } = await watching();
    const other = auth.createHandoff("alice", "Phone");
    auth.end(other.sessionId, RevocationReason.USER_REQUEST, "Signed out on the phone.");
    await until(() => log.of("device-ended").length === 1, "device-ended");
    expect(log.of("device-ended")[0]).toMatchObject({ sessionId: other.sessionId, revocationReason: "user_request", message: "Signed out on the phone." });
    expect(client.session).toBeDefined();
  });

  it("two tabs hold one stream between them; a revocation logs both out", async () => {
    const { auth, logA, logB, sessionId } = await twoTabs(open, undefined, { watchSession: true });
    await until(() => auth.openWatchers().length === 1, "one stream");
    await settle();
    expect(auth.calls.watch).toBe(1);

    const other = auth.createHandoff("alice", "Phone");
    auth.end(other.sessionId);
    await until(() => logB.of("device-ended").length === 1, "tab B to hear of the other device");

    auth.end(sessionId, RevocationReason.SECURITY_RISK, "");
    await until(() => logA.of("logged-out").length === 1 && logB.of("logged-out").length === 1, "both tabs to log out");
    for (const log of [logA, logB]) expect(log.of("logged-out")[0]).toMatchObject({ reason: "revoked", revocationReason: "security_risk", sessionId });
    await settle();
    expect(auth.calls.watch).toBe(1); // the waiting tab did not open a stream for the ended session
  });

  it("when the watching tab closes, the other tab takes the stream over", async () => {
    const { auth, a, b } = await twoTabs(open, undefined, { watchSession: true });
    await until(() => auth.openWatchers().length === 1, "one stream");
    a.close();
    await until(() => auth.calls.watch === 2 && auth.openWatchers().length === 1, "tab B's stream");
    expect(auth.bearers.at(-1)).toBe(await b.getAccessToken());
  });
});
