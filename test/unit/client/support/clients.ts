import { createInProcessLock, createSessionClient, type SessionClient, type SessionClientOptions, type SessionLock } from "../../../../src/client/index.js";
import type { SessionEvents } from "../../../../src/client/index.js";
import { FakeAuthority } from "./fake-authority.js";
import { FakeTime, until } from "./fake-time.js";

export const BASE_URL = "https://auth.example.test";

/** A browser-mode client on the fake authority, fake time and no jitter; no tab channel or watch unless asked. */
export function browserClient(auth: FakeAuthority, time: FakeTime, options: Partial<SessionClientOptions<string>> = {}): SessionClient<string> {
  return createSessionClient<string>({
    baseUrl: BASE_URL,
    fetch: auth.fetch,
    transport: auth.transport,
    clock: time,
    timers: time,
    random: () => 0.5,
    channelName: false,
    watchSession: false,
    ...options,
  });
}

/** Records every event of a client, in order. */
export function record<S>(client: SessionClient<S>) {
  const events: Array<{ [K in keyof SessionEvents]: { type: K; payload: SessionEvents[K] } }[keyof SessionEvents]> = [];
  for (const type of ["refreshed", "expiring", "logged-out", "device-ended", "error"] as const) {
    client.on(type, (payload) => events.push({ type, payload } as never));
  }
  return {
    events,
    of<K extends keyof SessionEvents>(type: K): SessionEvents[K][] {
      return events.filter((e) => e.type === type).map((e) => e.payload as SessionEvents[K]);
    },
  };
}

let channelSeq = 0;
/** A BroadcastChannel name no other test uses (they share the process). */
export function uniqueChannel(): string {
  return `sa-test-${process.pid}-${++channelSeq}-${Math.random().toString(36).slice(2)}`;
}

/**
 * Two tabs of one browser: one cookie jar, one clock, one channel, one lock
 * (or a lock each); tab A signed in and tab B holding its session. `open`
 * receives both for closing after the test.
 */
export async function twoTabs(
  open: SessionClient<string>[],
  lock: SessionLock | [SessionLock, SessionLock] = createInProcessLock(),
  options: Partial<SessionClientOptions<string>> = {},
) {
  const time = new FakeTime();
  const auth = new FakeAuthority(time);
  const channelName = uniqueChannel();
  const [lockA, lockB] = Array.isArray(lock) ? lock : [lock, lock];
  const a = browserClient(auth, time, { channelName, lock: lockA, ...options });
  const b = browserClient(auth, time, { channelName, lock: lockB, ...options });
  open.push(a, b);
  const logA = record(a);
  const logB = record(b);
  const { sessionId, handoffCode } = auth.createHandoff();
  await a.signIn(handoffCode);
  await until(() => b.session?.sessionId === sessionId, "tab B to adopt tab A's sign-in");
  return { time, auth, a, b, logA, logB, sessionId, channelName };
}
