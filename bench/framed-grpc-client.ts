import { connect, type Socket } from "node:net";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { encodeMessage } from "../src/transport/encode-message.js";
import { StreamTable } from "../src/transport/stream-table.js";

// HTTP/2 frame types and flags (RFC 9113 §6).
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const MAX_WINDOW = 2 ** 31 - 1;

interface Pending {
  chunks: Buffer[];
  resolve: (body: Buffer) => void;
  reject: (e: Error) => void;
}

/**
 * A load generator's gRPC client that speaks HTTP/2 on a plain socket: each call
 * is one HEADERS and one DATA frame, written with the other calls of the same
 * tick in one syscall. node:http2 builds a full Duplex stream per call, which
 * cost the load generator about half a core at 3,000 calls/s on the same two
 * cores as the server it measures; this costs a fraction of that.
 *
 * It never decodes the server's header blocks (so keeps no HPACK state): a call
 * succeeds when its stream carries a gRPC message and ends, and fails when the
 * stream ends without one (a trailers-only error answer) or is reset. Callers
 * check the decoded answer, as the load generator does. Unary calls only.
 */
export class FramedGrpcClient {
  private readonly socket: Socket;
  private readonly ready: Promise<void>;
  private nextStreamId = 1;
  // Not a Map: see StreamTable. With one, every call the load generator made was
  // promoted, and its full GCs showed up in the latencies it measured.
  private readonly pending = new StreamTable<Pending>();
  private out: Buffer[] = [];
  private flushQueued = false;
  private inbox = Buffer.alloc(0);
  /** The connection-level window the server granted for our DATA, and what waits for it. */
  private sendWindow = 65_535;
  private readonly blocked: { streamId: number; body: Buffer }[] = [];
  private received = 0;
  private failure: Error | undefined;

  constructor(target: string, private readonly authority = target) {
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    this.socket = connect({ host, port, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once("connect", () => resolve());
      this.socket.once("error", reject);
    });
    this.socket.on("data", (d: Buffer) => this.read(d));
    this.socket.on("error", (e) => this.fail(e));
    this.socket.on("close", () => this.fail(new Error("connection closed")));
    // Preface; no server push; the largest stream window; then open the connection window.
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(MAX_WINDOW, 8);
    this.queue(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(SETTINGS, 0, 0, settings), windowUpdate(0, MAX_WINDOW - 65_535));
  }

  /** Resolves once the TCP connection is up. */
  connected(): Promise<void> {
    return this.ready;
  }

  call<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, request: MessageShape<I>, headers: Record<string, string> = {}): Promise<MessageShape<O>> {
    if (this.failure) return Promise.reject(this.failure);
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    const body = encodeMessage(input, request, 5);
    body[0] = 0;
    body.writeUInt32BE(body.length - 5, 1);
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(streamId, { chunks: [], resolve, reject });
      this.queue(frame(HEADERS, END_HEADERS, streamId, this.headerBlock(path, headers)));
      this.sendData(streamId, body);
    }).then((grpc) => {
      const length = grpc.readUInt32BE(1);
      if (grpc[0] !== 0 || grpc.length < 5 + length) throw new Error("malformed gRPC message");
      return fromBinary(output, grpc.subarray(5, 5 + length));
    });
  }

  close(): void {
    this.failure ??= new Error("client closed");
    this.socket.end();
  }

  /** HPACK literals without indexing (RFC 7541 §6.2.2), static-table names where there is one. */
  private headerBlock(path: string, headers: Record<string, string>): Buffer {
    const parts: Buffer[] = [
      Buffer.from([0x83, 0x86]), // :method POST, :scheme http
      literal(4, path),
      literal(1, this.authority),
      literal(31, "application/grpc"),
      literal(0, "trailers", "te"),
    ];
    for (const [name, value] of Object.entries(headers)) parts.push(name === "authorization" ? literal(23, value) : literal(0, value, name));
    return Buffer.concat(parts);
  }

  private sendData(streamId: number, body: Buffer): void {
    if (this.blocked.length > 0 || body.length > this.sendWindow) {
      this.blocked.push({ streamId, body });
      return;
    }
    this.sendWindow -= body.length;
    this.queue(frame(DATA, END_STREAM, streamId, body));
  }

  private queue(...frames: Buffer[]): void {
    this.out.push(...frames);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Every call started in this tick leaves in one write.
    process.nextTick(() => {
      this.flushQueued = false;
      const batch = this.out;
      this.out = [];
      this.socket.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch));
    });
  }

  private read(data: Buffer): void {
    let buf = this.inbox.length ? Buffer.concat([this.inbox, data]) : data;
    while (buf.length >= 9) {
      const length = buf.readUIntBE(0, 3);
      if (buf.length < 9 + length) break;
      const type = buf[3]!;
      const flags = buf[4]!;
      const streamId = buf.readUInt32BE(5) & 0x7fffffff;
      const payload = buf.subarray(9, 9 + length);
      buf = buf.subarray(9 + length);
      this.onFrame(type, flags, streamId, payload);
    }
    this.inbox = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    switch (type) {
      case DATA: {
        const call = this.pending.get(streamId);
        this.received += payload.length;
        if (this.received > MAX_WINDOW / 2) {
          this.queue(windowUpdate(0, this.received));
          this.received = 0;
        }
        if (call) call.chunks.push(unpad(flags, payload));
        if (flags & END_STREAM) this.finish(streamId);
        return;
      }
      case HEADERS:
      case CONTINUATION:
        // Header blocks are not decoded (see the class comment); trailers end the stream.
        if (flags & END_STREAM) this.finish(streamId);
        return;
      case RST_STREAM:
        this.pending.get(streamId)?.reject(new Error(`stream reset (HTTP/2 error ${payload.readUInt32BE(0)})`));
        this.pending.delete(streamId);
        return;
      case SETTINGS:
        if (!(flags & ACK)) this.queue(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
        return;
      case PING:
        if (!(flags & ACK)) this.queue(frame(PING, ACK, 0, payload));
        return;
      case WINDOW_UPDATE:
        if (streamId === 0) {
          this.sendWindow += payload.readUInt32BE(0) & 0x7fffffff;
          while (this.blocked.length > 0 && this.blocked[0]!.body.length <= this.sendWindow) {
            const next = this.blocked.shift()!;
            this.sendWindow -= next.body.length;
            this.queue(frame(DATA, END_STREAM, next.streamId, next.body));
          }
        }
        return;
      case GOAWAY:
        this.fail(new Error(`GOAWAY (HTTP/2 error ${payload.readUInt32BE(4)})`));
        return;
      default:
        return;
    }
  }

  private finish(streamId: number): void {
    const call = this.pending.get(streamId);
    if (!call) return;
    this.pending.delete(streamId);
    if (call.chunks.length === 0) call.reject(new Error("the call ended without a message (a gRPC error status)"));
    else call.resolve(call.chunks.length === 1 ? call.chunks[0]! : Buffer.concat(call.chunks));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const call of this.pending.values()) call.reject(e);
    this.pending.clear();
  }
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const f = Buffer.allocUnsafe(9 + payload.length);
  f.writeUIntBE(payload.length, 0, 3);
  f[3] = type;
  f[4] = flags;
  f.writeUInt32BE(streamId, 5);
  payload.copy(f, 9);
  return f;
}

function windowUpdate(streamId: number, increment: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(increment, 0);
  return frame(WINDOW_UPDATE, 0, streamId, p);
}

/** A literal header field without indexing: indexed name (index > 0) or a new name. */
function literal(index: number, value: string, name?: string): Buffer {
  const v = Buffer.from(value);
  const parts = [integer(index, 4, 0x00)];
  if (index === 0) {
    const n = Buffer.from(name!);
    parts.push(integer(n.length, 7, 0x00), n);
  }
  parts.push(integer(v.length, 7, 0x00), v);
  return Buffer.concat(parts);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function integer(value: number, prefixBits: number, pattern: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([pattern | value]);
  const bytes = [pattern | max];
  for (value -= max; value >= 128; value >>= 7) bytes.push((value & 0x7f) | 0x80);
  bytes.push(value);
  return Buffer.from(bytes);
}

/** A DATA frame's payload without its padding. */
function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & PADDED)) return payload;
  const pad = payload[0]!;
  return payload.subarray(1, payload.length - pad);
}
