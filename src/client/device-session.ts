import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { SessionInfo } from "../gen/sessionauthority/v1/authority_pb.js";

/**
 * One live session of the user, shown as a device. Times are authority epoch ms (0: unknown).
 *
 * @example
 * ```ts
 * for (const d of await client.listDevices()) {
 *   console.log(`${d.deviceName || d.userAgent}${d.current ? " (this device)" : ""}, last active ${new Date(d.lastActivityAt)}`);
 * }
 * ```
 */
export interface DeviceSession {
  sessionId: string;
  /** The client-chosen device id given at sign-in. */
  deviceId: string;
  deviceName: string;
  userAgent: string;
  ipAddress: string;
  createdAt: number;
  lastActivityAt: number;
  /** When the session ends if left idle. */
  expiresAt: number;
  absoluteExpiresAt: number;
  /** True for the session of this client. */
  current: boolean;
  clientId: string;
}

/** A ListSessions entry as a DeviceSession. */
export function deviceSessionOf(info: SessionInfo): DeviceSession {
  const ms = (t: Timestamp | undefined) => (t ? timestampMs(t) : 0);
  return {
    sessionId: info.sessionId,
    deviceId: info.device?.id ?? "",
    deviceName: info.device?.name ?? "",
    userAgent: info.userAgent,
    ipAddress: info.ipAddress,
    createdAt: ms(info.createdAt),
    lastActivityAt: ms(info.lastActivityAt),
    expiresAt: ms(info.expiresAt),
    absoluteExpiresAt: ms(info.absoluteExpiresAt),
    current: info.current,
    clientId: info.clientId,
  };
}
