import { createSessionClient, type SessionClient, type SessionClientOptions } from "../../../../src/client/index.js";
import type { SessionEvents } from "../../../../src/client/index.js";
import type { FakeAuthority } from "./fake-authority.js";
import type { FakeTime } from "./fake-time.js";

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
