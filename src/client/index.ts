// The client SDK's public API (package entry `session-authority/client`), for browsers
// and Node; everything else in this folder is internal.
export { createSessionClient } from "./session-client.js";
export type { SessionClient } from "./session-client.js";
export type { SessionClientOptions, ClientLogger } from "./client-options.js";
export { ClientOptionsError } from "./client-options-error.js";
export { SessionClientError } from "./session-client-error.js";
export type { SessionClientErrorCode } from "./session-client-error.js";
export type {
  SessionEvents,
  SessionSnapshot,
  RefreshedEvent,
  ExpiringEvent,
  LoggedOutEvent,
  LoggedOutReason,
  DeviceEndedEvent,
  ClientErrorEvent,
  RevocationReasonName,
} from "./session-events.js";
export type { DeviceSession } from "./device-session.js";
export { parseSessionGrant } from "./session-grant.js";
export type { SessionGrant } from "./session-grant.js";
export type { TokenRefresher } from "./token-refresher.js";
export { createCookieRefresher } from "./cookie-refresher.js";
export type { CookieRefresherOptions } from "./cookie-refresher.js";
export { createRpcRefresher, createMemoryRefreshTokenStorage } from "./rpc-refresher.js";
export type { RpcRefresherOptions, RpcSignIn, RefreshTokenStorage, TimestampLike } from "./rpc-refresher.js";
export { createWebLocksLock, createInProcessLock } from "./session-lock.js";
export type { SessionLock, LockHandle, WebLockManager } from "./session-lock.js";
export type { Timers } from "./timers.js";
export type { Clock } from "../shared/clock.js";
