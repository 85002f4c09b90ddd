import { createServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Logger } from "../shared/logger.js";
import { encodeMessage } from "./encode-message.js";
import { useStreamTable } from "./stream-table.js";
import { ERROR_CODE_HEADER } from "./status-table.js";
import {
  bidiStreamingMethods, decodeRequest, requestIdFrom, serverStreamingMethods, toWireError, unaryMethods, type BidiStreamHandler, type CallContext,
  type ServedService, type ServerStreamHandler, type UnaryHandler, type WireError,
} from "./call-context.js";
import { listen } from "./listen.js";

export interface H2GrpcServerOptions {
  host: string;
  port: number;
  services: ServedService[];
  logger: Logger;
  /** Largest request message accepted; a larger one is RESOURCE_EXHAUSTED before it is buffered. */
  maxMessageBytes: number;
}

export interface H2GrpcServer {
  port: number;
  close(): Promise<void>;
}

type Route = { name: string; input: DescMessage; output: DescMessage } & (
  | { kind: "unary"; handler: UnaryHandler }
  | { kind: "stream"; handler: ServerStreamHandler }
  | { kind: "bidi"; handler: BidiStreamHandler }
);

/** A protocol failure carries no domain code, as grpc-js sends none for these. */
type Status = Pick<WireError, "code" | "message"> & { domainCode?: WireError["domainCode"] };

/** Ends a call once: with OK or a status. Later calls do nothing. */
type EndCall = (status: Status | "ok") => void;

/** Thrown to a handler reading a request stream that has already ended the call (protocol error, reset, deadline). */
class CallEnded extends Error {}

// application/grpc, optionally +proto: a +json or grpc-web body would decode as garbage.
const CONTENT_TYPE = /^application\/grpc(?:\+proto)?(?:;|$)/i;
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
// Longer timers would fire at once (Node clamps them to 1 ms); such a deadline is "never".
const MAX_TIMER_MS = 2 ** 31 - 1;
// How long close() lets in-flight calls finish before it cuts their connections.
const CLOSE_GRACE_MS = 2000;
const OK_HEADERS = { ":status": 200, "content-type": "application/grpc+proto", "grpc-accept-encoding": "identity" };
const OK_TRAILERS = { "grpc-status": "0", "grpc-message": "OK" };
const ignore = () => {};

/**
 * Unary, server-streaming and bidirectional-streaming gRPC over cleartext
 * HTTP/2 on bare node:http2: the verifier sidecar's hot path, where grpc-js's
 * general machinery (interceptors, compression, channelz) cost about a third of
 * the calls per second (h2load, trivial handler) for nothing the sidecar uses.
 * Identity encoding only; exactly one request message per unary or
 * server-streaming call (0 or 2+ is UNIMPLEMENTED, the gRPC status-code doc's
 * "request cardinality violation", as grpc-js answers too). Client-streaming
 * methods have no route (nothing of ours has one).
 */
export async function startH2GrpcServer(o: H2GrpcServerOptions): Promise<H2GrpcServer> {
  const routes = new Map<string, Route>();
  for (const served of o.services) {
    // Other streaming methods get no route, so they answer UNIMPLEMENTED like unknown ones.
    for (const { method, handler } of unaryMethods(served)) {
      routes.set(`/${served.service.typeName}/${method.name}`, { kind: "unary", name: method.name, input: method.input, output: method.output, handler });
    }
    for (const { method, handler } of serverStreamingMethods(served)) {
      routes.set(`/${served.service.typeName}/${method.name}`, { kind: "stream", name: method.name, input: method.input, output: method.output, handler });
    }
    for (const { method, handler } of bidiStreamingMethods(served)) {
      routes.set(`/${served.service.typeName}/${method.name}`, { kind: "bidi", name: method.name, input: method.input, output: method.output, handler });
    }
  }
  // Open server streams, so close() can end them (UNAVAILABLE: the client reconnects elsewhere).
  const streams = new Set<() => void>();
  // Node's 10 MB default per connection refuses streams (ENHANCE_YOUR_CALM) once a
  // pooled client has some thousands of calls in flight; grpc-js lifts it the same way.
  const server = createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
  const sessions = new Set<Http2Session>();
  let closing = false;
  server.on("session", (session) => {
    useStreamTable(session);
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  server.on("sessionError", (err) => o.logger.debug({ err }, "gRPC connection error"));
  server.on("stream", (stream, headers) => serve(stream, headers, routes, streams, o));
  const port = await listen(server, o.host, o.port);
  server.on("error", (err) => o.logger.error({ err }, "gRPC server error"));
  return {
    port,
    async close() {
      closing = true;
      for (const end of streams) end();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // server.close() alone waits for every connection, and clients keep idle ones open.
      for (const session of sessions) session.close();
      const force = setTimeout(() => sessions.forEach((s) => s.destroy()), CLOSE_GRACE_MS);
      await closed;
      clearTimeout(force);
    },
  };
}

function serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, routes: Map<string, Route>, streams: Set<() => void>, o: H2GrpcServerOptions): void {
  // A client's RST_STREAM surfaces as 'error'; the call is simply over ('close' below).
  stream.on("error", ignore);
  if (headers[":method"] !== "POST") return void respondHttp(stream, 405);
  if (!CONTENT_TYPE.test(headers["content-type"] ?? "")) return void respondHttp(stream, 415);
  const path = headers[":path"] ?? "";
  const route = routes.get(path);
  if (!route) return sendStatus(stream, { code: Code.Unimplemented, message: `method ${path.slice(0, 200)} is not implemented` });

  let done = false;
  let timer: NodeJS.Timeout | undefined;
  // Streams only (unary calls skip its cost): aborted when the call ends for any reason, so the handler stops.
  let ended: AbortController | undefined;
  const fail: EndCall = (status) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    ended?.abort();
    finish(stream, status);
  };
  stream.once("close", () => {
    done = true;
    clearTimeout(timer);
    ended?.abort();
  });
  const timeout = headers["grpc-timeout"];
  if (timeout !== undefined) {
    const m = typeof timeout === "string" ? TIMEOUT.exec(timeout) : null;
    if (!m) return fail({ code: Code.Internal, message: `invalid grpc-timeout "${String(timeout).slice(0, 20)}"` });
    const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
    if (ms <= MAX_TIMER_MS) timer = setTimeout(() => fail({ code: Code.DeadlineExceeded, message: "deadline exceeded" }), ms);
  }

  if (route.kind === "bidi") {
    // The handler starts at once and reads requests as they arrive; HTTP/2 flow
    // control holds the client back while it does not read.
    const context = contextOf(headers);
    const call = (ended = new AbortController());
    const requests = readMessages(stream, route.input, o.maxMessageBytes, call.signal, fail);
    const wireError = (error: unknown) => toWireError(error, o.logger, route.name, context.requestId);
    return runStream(stream, streams, route.handler(requests, context, call.signal), route.output, call.signal, fail, wireError);
  }

  const chunks: Buffer[] = [];
  let received = 0;
  let frameBytes = -1; // prefix + message, known once the 5-byte prefix is in
  stream.on("data", (chunk: Buffer) => {
    if (done) return; // after an early error the rest of the body is dropped, not buffered
    chunks.push(chunk);
    received += chunk.length;
    if (frameBytes < 0 && received >= 5) {
      const prefix = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      const length = prefix.readUInt32BE(1);
      const problem = framingProblem(prefix, length, o.maxMessageBytes);
      if (problem) return fail(problem);
      frameBytes = 5 + length;
    }
    if (frameBytes >= 0 && received > frameBytes) fail({ code: Code.Unimplemented, message: "a unary call takes exactly one request message; got more" });
  });
  stream.once("end", () => {
    if (done) return;
    if (received === 0) return fail({ code: Code.Unimplemented, message: "a unary call takes exactly one request message; got none" });
    if (received < frameBytes || frameBytes < 0) return fail({ code: Code.Internal, message: "request message truncated" });
    const context = contextOf(headers);
    const wireError = (error: unknown) => toWireError(error, o.logger, route.name, context.requestId);
    let request;
    try {
      request = decodeRequest(route.input, (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).subarray(5));
    } catch (error) {
      return fail(wireError(error));
    }
    if (route.kind === "stream") {
      const call = (ended = new AbortController());
      return runStream(stream, streams, route.handler(request, context, call.signal), route.output, call.signal, fail, wireError);
    }
    route.handler(request, context).then(
      (response) => {
        // destroyed comes before 'close' (a tick later) when the client resets the stream
        if (done || stream.destroyed) return;
        let frame: Buffer;
        try {
          frame = frameOf(route.output, response);
        } catch (error) {
          return fail(wireError(error));
        }
        done = true;
        clearTimeout(timer);
        stream.respond(OK_HEADERS, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
        stream.end(frame);
      },
      (error) => fail(wireError(error)),
    );
  });
}

/** What is wrong with a message's 5-byte prefix (flags, declared length), if anything. */
function framingProblem(prefix: Buffer, length: number, maxBytes: number): Status | undefined {
  if (prefix[0] === 1) return { code: Code.Unimplemented, message: "compressed messages are not supported (grpc-accept-encoding: identity)" };
  if (prefix[0] !== 0) return { code: Code.Internal, message: `invalid message flags ${prefix[0]}` };
  if (length > maxBytes) return { code: Code.ResourceExhausted, message: `request message of ${length} bytes exceeds the limit of ${maxBytes}` };
  return undefined;
}

function contextOf(headers: IncomingHttpHeaders): CallContext {
  // Pseudo-headers and binary metadata are not metadata a handler reads, as under grpc-js.
  const header = (name: string) => {
    const v = name.startsWith(":") || name.endsWith("-bin") ? undefined : headers[name];
    return typeof v === "string" ? v : undefined;
  };
  return { header, requestId: requestIdFrom(header("x-request-id")) };
}

/**
 * Runs a streaming call to its end: OK when the handler returns, its error when
 * it throws, UNAVAILABLE when the server closes first.
 */
function runStream(
  stream: ServerHttp2Stream, streams: Set<() => void>, messages: AsyncIterable<unknown>, output: DescMessage, ended: AbortSignal,
  end: EndCall, wireError: (error: unknown) => WireError,
): void {
  const shutdown = () => end({ code: Code.Unavailable, message: "the server is shutting down" });
  streams.add(shutdown);
  ended.addEventListener("abort", () => streams.delete(shutdown));
  // Once the call has ended, whatever the handler throws (typically CallEnded) is moot, and not worth a log line.
  sendStream(stream, messages, output, ended).then(
    () => end("ok"),
    (error) => void (ended.aborted || error instanceof CallEnded || end(wireError(error))),
  );
}

/**
 * The request messages of a bidirectional stream, decoded as they complete,
 * until the client half-closes. A protocol error ends the call itself (so the
 * status is right whatever the handler does) and then throws CallEnded; a
 * message that does not decode throws INVALID_ARGUMENT for the handler to pass on.
 */
async function* readMessages(stream: ServerHttp2Stream, input: DescMessage, maxBytes: number, ended: AbortSignal, end: EndCall): AsyncGenerator<unknown> {
  const refuse = (status: Status) => {
    end(status);
    return new CallEnded(status.message);
  };
  // destroyOnReturn: false, or a handler that stops reading early would reset the stream before its answer went out.
  const chunks = stream.iterator({ destroyOnReturn: false }) as AsyncIterableIterator<Buffer>;
  // After a deadline or close() a client may still hold its side open; the handler must not wait on it.
  const over = new Promise<IteratorResult<Buffer>>((resolve) => {
    ended.addEventListener("abort", () => resolve({ done: true, value: undefined }), { once: true });
  });
  let pending: Buffer = Buffer.alloc(0);
  try {
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await Promise.race([chunks.next(), over]);
      } catch {
        throw new CallEnded("the client reset the stream");
      }
      if (ended.aborted) throw new CallEnded("the call has ended");
      if (next.done) break;
      pending = pending.length === 0 ? next.value : Buffer.concat([pending, next.value]);
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        const problem = framingProblem(pending, length, maxBytes);
        if (problem) throw refuse(problem);
        if (pending.length < 5 + length) break;
        const bytes = pending.subarray(5, 5 + length);
        pending = pending.subarray(5 + length);
        yield decodeRequest(input, bytes);
        if (ended.aborted) throw new CallEnded("the call has ended");
      }
    }
    if (pending.length > 0) throw refuse({ code: Code.Internal, message: "request message truncated" });
  } finally {
    void chunks.return?.()?.catch(ignore);
  }
}

/**
 * Writes each message the handler yields until it returns or the call ends
 * (`ended`). Returning the iterator lets the handler's finally blocks run.
 */
async function sendStream(stream: ServerHttp2Stream, messages: AsyncIterable<unknown>, output: DescMessage, ended: AbortSignal): Promise<void> {
  const iterator = messages[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done || ended.aborted || stream.destroyed) return;
      const frame = frameOf(output, next.value as object);
      if (!stream.headersSent) stream.respond(OK_HEADERS, { waitForTrailers: true });
      if (!stream.write(frame)) {
        await new Promise<void>((resolve) => {
          stream.once("drain", resolve);
          ended.addEventListener("abort", () => resolve(), { once: true });
        });
      }
    }
  } finally {
    void iterator.return?.()?.catch(ignore);
  }
}

/** `message` as one uncompressed, length-prefixed gRPC message. */
function frameOf(output: DescMessage, message: object): Buffer {
  const frame = encodeMessage(output, message, 5);
  frame[0] = 0;
  frame.writeUInt32BE(frame.length - 5, 1);
  return frame;
}

/** Ends a call with `status`: trailers-only if nothing was sent yet, else in the trailers after the messages. */
function finish(stream: ServerHttp2Stream, status: Status | "ok"): void {
  if (stream.destroyed) return;
  if (!stream.headersSent) {
    // A stream that yielded nothing still ends with OK, in a trailers-only response.
    if (status === "ok") return void stream.respond({ ...OK_HEADERS, ...OK_TRAILERS }, { endStream: true });
    return sendStatus(stream, status);
  }
  stream.once("wantTrailers", () => stream.sendTrailers(status === "ok" ? OK_TRAILERS : statusHeaders(status)));
  stream.end();
}

function statusHeaders(status: Status): Record<string, string> {
  return {
    "grpc-status": String(status.code),
    "grpc-message": percentEncode(status.message),
    ...(status.domainCode ? { [ERROR_CODE_HEADER]: status.domainCode } : {}),
  };
}

/** A trailers-only response: the call ends before any message was sent. */
function sendStatus(stream: ServerHttp2Stream, status: Status): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ...OK_HEADERS, ...statusHeaders(status) }, { endStream: true });
}

function respondHttp(stream: ServerHttp2Stream, status: number): void {
  if (!stream.destroyed) stream.respond({ ":status": status, ...(status === 405 ? { allow: "POST" } : {}) }, { endStream: true });
}

/** grpc-message is percent-encoded UTF-8: every byte outside printable ASCII, and "%" itself. */
export function percentEncode(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
