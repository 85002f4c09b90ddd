import { parseSessionGrant, type SessionGrant } from "./session-grant.js";
import type { DeviceEndedEvent, LoggedOutEvent } from "./session-events.js";

/**
 * What tabs tell each other. Messages travel in memory between same-origin contexts
 * (BroadcastChannel); nothing is written to any storage.
 */
export type TabMessage =
  /** A tab obtained a new grant: the others adopt it instead of refreshing themselves. */
  | { type: "grant"; grant: SessionGrant }
  /** A session ended (logout, refused refresh, pushed revocation). */
  | { type: "logged-out"; event: LoggedOutEvent }
  /** The tab watching `forSession` heard that another device of the user ended. */
  | { type: "device-ended"; forSession: string; event: DeviceEndedEvent };

/** One tab's end of the channel. */
export interface TabChannel {
  post(message: TabMessage): void;
  close(): void;
}

const VERSION = 1;

/**
 * Opens the BroadcastChannel `name`, or returns undefined where there is none.
 * Malformed messages (another version of the SDK, another script) are ignored.
 */
export function openTabChannel(name: string, onMessage: (message: TabMessage) => void): TabChannel | undefined {
  if (typeof BroadcastChannel !== "function") return undefined;
  const channel = new BroadcastChannel(name);
  channel.onmessage = (event: MessageEvent) => {
    const message = readMessage(event.data);
    if (message) onMessage(message);
  };
  return {
    post: (message) => channel.postMessage({ v: VERSION, ...message }),
    close: () => channel.close(),
  };
}

function readMessage(data: unknown): TabMessage | undefined {
  if (!data || typeof data !== "object") return undefined;
  const m = data as { v?: unknown; type?: unknown; grant?: unknown; event?: unknown; forSession?: unknown };
  if (m.v !== VERSION) return undefined;
  try {
    switch (m.type) {
      case "grant":
        return { type: "grant", grant: parseSessionGrant(m.grant) };
      case "logged-out": {
        const event = m.event as LoggedOutEvent | undefined;
        return typeof event?.sessionId === "string" && typeof event.reason === "string" ? { type: "logged-out", event } : undefined;
      }
      case "device-ended": {
        const event = m.event as DeviceEndedEvent | undefined;
        return typeof m.forSession === "string" && typeof event?.sessionId === "string"
          ? { type: "device-ended", forSession: m.forSession, event }
          : undefined;
      }
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}
