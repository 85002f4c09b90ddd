// Clients of the WatchSession stream that collect what arrives, for tests.
import * as grpcJs from '@grpc/grpc-js';
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import {
  WatchSessionRequestSchema, WatchSessionResponseSchema, type WatchSessionResponse,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { SERVICE_PATH, type AuthorityClient } from './authority.js';

export type WatchEvent = NonNullable<WatchSessionResponse['event']['case']>;

export interface Watcher {
  messages: WatchSessionResponse[];
  /** The next message of that kind after the last one returned; rejects after timeoutMs. */
  next<K extends WatchEvent>(kind: K, timeoutMs?: number): Promise<Extract<WatchSessionResponse['event'], { case: K }>>;
  /** Settles when the stream ends: undefined when it ended OK, else the error. */
  closed: Promise<unknown>;
  isClosed(): boolean;
  cancel(): void;
}

function collector(start: (push: (m: WatchSessionResponse) => void) => { closed: Promise<unknown>; cancel(): void }): Watcher {
  const messages: WatchSessionResponse[] = [];
  let cursor = 0;
  let ended = false;
  const { closed, cancel } = start((m) => messages.push(m));
  void closed.then(() => (ended = true));
  return {
    messages,
    closed,
    cancel,
    isClosed: () => ended,
    async next(kind: WatchEvent, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = messages.findIndex((m, index) => index >= cursor && m.event.case === kind);
        if (i >= 0) {
          cursor = i + 1;
          return messages[i]!.event as never;
        }
        if (ended && messages.length <= cursor) throw new Error(`stream closed without ${kind}; got ${messages.map((m) => m.event.case).join(', ')}`);
        if (Date.now() > deadline) throw new Error(`no ${kind} within ${timeoutMs} ms; got ${messages.map((m) => m.event.case).join(', ')}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

/** WatchSession through a Connect client (Connect over HTTP/1.1, or gRPC over HTTP/2). */
export function watchWith(client: AuthorityClient, token: string | undefined): Watcher {
  return collector((push) => {
    const controller = new AbortController();
    const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const closed = (async () => {
      try {
        for await (const m of client.watchSession({}, { headers, signal: controller.signal })) push(m);
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    return { closed, cancel: () => controller.abort() };
  });
}

/** WatchSession through a plain @grpc/grpc-js client; an error is its ServiceError. */
export function watchWithGrpcJs(client: grpcJs.Client, token: string): Watcher {
  return collector((push) => {
    const metadata = new grpcJs.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const call = client.makeServerStreamRequest<unknown, WatchSessionResponse>(
      `${SERVICE_PATH}/WatchSession`,
      () => Buffer.from(toBinary(WatchSessionRequestSchema, create(WatchSessionRequestSchema))),
      (b) => fromBinary(WatchSessionResponseSchema, b),
      {}, metadata, {},
    );
    call.on('data', push);
    const closed = new Promise<unknown>((resolve) => {
      call.on('error', (e) => resolve(e));
      call.on('status', (s) => { if (s.code === grpcJs.status.OK) resolve(undefined); });
    });
    return { closed, cancel: () => call.cancel() };
  });
}
