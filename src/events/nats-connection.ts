import { connect, type NatsConnection } from "@nats-io/transport-node";

/**
 * A NATS connection as the authority and verifiers use it: it reconnects for
 * ever (revocations must flow again without a restart), quickly, and notices a
 * dead server within a few seconds.
 */
export function connectNats(servers: string | string[], name: string): Promise<NatsConnection> {
  return connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 5000, timeout: 2000 });
}
