import { AsyncLocalStorage } from "node:async_hooks";

/** What every log line written during a call carries. */
export interface RequestScope {
  readonly requestId: string;
}

/**
 * The call whose work is running, for the logger to stamp its request id on
 * every line without each function passing it along. One per process by
 * nature: the value lives in the async context of each call, so two servers in
 * one process cannot see each other's. Entered once per RPC by
 * instrumentHandlers; on Node 20 an active AsyncLocalStorage costs about 70 ns
 * per awaited promise (measured here), well under 1% of a Refresh.
 */
export const requestContext = new AsyncLocalStorage<RequestScope>();
