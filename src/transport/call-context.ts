import { randomBytes } from "node:crypto";
import { fromBinary, type DescMessage, type DescMethodBiDiStreaming, type DescMethodServerStreaming, type DescMethodUnary, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { STATUS_OF } from "./status-table.js";
import { AuthorityError, type ErrorCode } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

/** What a handler may know about a call, whichever transport carried it. */
export interface CallContext {
  /** A request header (lower-case name), or undefined. */
  header(name: string): string | undefined;
  /** `x-request-id` from the caller, or a process-unique one; appears in the call's log lines. */
  requestId: string;
  /**
   * The client certificate the TLS handshake verified, if any. A function so the
   * certificate is only parsed for calls that authenticate with it.
   */
  clientCertificate?: () => ClientCertificate | undefined;
}

/** What identifies the holder of a verified client certificate. */
export interface ClientCertificate {
  /** The subject's CN; undefined unless it has exactly one. */
  commonName: string | undefined;
  /** Subject alternative names of kind DNS and URI, as "DNS:<name>" and "URI:<uri>". */
  altNames: string[];
}

// A counter, not a UUID: request ids need to be unique, not unguessable, and a
// random UUID per call measurably cost throughput.
const processPrefix = randomBytes(4).toString("hex");
let requestCounter = 0;

export function requestIdFrom(header: string | undefined): string {
  return header?.slice(0, 64) || `${processPrefix}-${(++requestCounter).toString(36)}`;
}

/** One handler per RPC; both transports drive the same functions. */
export type UnaryHandler<I = any, O = any> = (request: I, context: CallContext) => Promise<O>;

/**
 * A server-streaming RPC: the messages it yields go out as they come. `signal`
 * aborts when the client goes away, the deadline passes or the server closes;
 * the handler should then return. Throwing ends the call with that error.
 */
export type ServerStreamHandler<I = any, O = any> = (request: I, context: CallContext, signal: AbortSignal) => AsyncIterable<O>;

/**
 * A bidirectional-streaming RPC: `requests` yields the client's messages until
 * it half-closes (a malformed one throws INVALID_ARGUMENT from the iteration);
 * the messages the handler yields go out as they come, so it may answer each
 * request before the next arrives. `signal` is as for server streams. The
 * Connect HTTP/1.1 port cannot carry these; the gRPC ports can.
 */
export type BidiStreamHandler<I = any, O = any> = (requests: AsyncIterable<I>, context: CallContext, signal: AbortSignal) => AsyncIterable<O>;

/** The handlers of a service, keyed by the method's local name; the method's kind says which shape. */
export type Handlers = Record<string, UnaryHandler | ServerStreamHandler | BidiStreamHandler>;

/** A service and the handlers of its RPCs, keyed by the method's local name. */
export interface ServedService {
  service: DescService;
  handlers: Handlers;
}

/**
 * The unary methods of a service with their handlers, for every transport to
 * route the same way. A unary method without a handler is a wiring bug, caught
 * at start.
 */
export function* unaryMethods({ service, handlers }: ServedService): Generator<{ method: DescMethodUnary; handler: UnaryHandler }> {
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    const handler = handlers[method.localName];
    if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
    yield { method: method as DescMethodUnary, handler: handler as UnaryHandler };
  }
}

/**
 * The server-streaming methods that have a handler. One without is left out and
 * answers UNIMPLEMENTED (e.g. grpc.health.v1 Watch, or WatchSession on a sidecar).
 */
export function* serverStreamingMethods({ service, handlers }: ServedService): Generator<{ method: DescMethodServerStreaming; handler: ServerStreamHandler }> {
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (method.methodKind !== "server_streaming" || !handler) continue;
    yield { method: method as DescMethodServerStreaming, handler: handler as ServerStreamHandler };
  }
}

/** The bidirectional-streaming methods that have a handler; like server streams, one without answers UNIMPLEMENTED. */
export function* bidiStreamingMethods({ service, handlers }: ServedService): Generator<{ method: DescMethodBiDiStreaming; handler: BidiStreamHandler }> {
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (method.methodKind !== "bidi_streaming" || !handler) continue;
    yield { method: method as DescMethodBiDiStreaming, handler: handler as BidiStreamHandler };
  }
}

export interface WireError {
  code: Code;
  message: string;
  /** The domain code, sent as response metadata so clients can tell cases apart. */
  domainCode: ErrorCode;
}

/**
 * Turns anything a handler threw into what goes on the wire. Domain errors keep
 * their message; anything else becomes a bare INTERNAL and is logged with its
 * stack here, never sent.
 */
export function toWireError(error: unknown, logger: Logger, method: string, requestId: string): WireError {
  if (error instanceof AuthorityError) {
    const level = error.code === "internal" || error.code === "store_unavailable" ? "warn" : "debug";
    logger[level]({ requestId, method, code: error.code, err: error.cause }, error.message);
    return { code: STATUS_OF[error.code], message: error.message, domainCode: error.code };
  }
  if (error instanceof ConnectError) {
    return { code: error.code, message: error.rawMessage, domainCode: error.code === Code.InvalidArgument ? "invalid_argument" : "internal" };
  }
  logger.error({ requestId, method, err: error }, "unexpected error");
  return { code: Code.Internal, message: "internal error", domainCode: "internal" };
}

/**
 * A request message off the wire, for every transport alike: bytes that do not
 * decode are the caller's mistake (INVALID_ARGUMENT), not the server's.
 */
export function decodeRequest(input: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(input, bytes);
  } catch {
    throw new AuthorityError("invalid_argument", `request is not a valid ${input.typeName}`);
  }
}
