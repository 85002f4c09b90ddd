import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { RevocationEntry } from "../verifier/revocation-feed.js";
import { varint64Size, writeVarint64 } from "../shared/varint.js";
import { readRevocationEntry, readTimestampMs } from "./event-codec.js";

/** What a snapshot says about itself (RevocationSnapshot's fields other than the entries). */
export interface SnapshotPosition {
  /** Every stream message up to and including this sequence is in the snapshot. */
  streamSequence: number;
  /** The stream's creation time (ms), which tells one life of the stream from the next. */
  streamCreated: number;
}

/** Entries written between two yields to the event loop, so a big set never stalls the process serving RPCs. */
const ENTRIES_PER_SLICE = 5000;

/**
 * RevocationSnapshot (events.proto) of the given entries, written byte by byte
 * into one growing buffer: the library's writer (a fork and a join per nested
 * message) took 5 µs an entry, half a second of an authority's event loop per
 * 100k entries; this takes a tenth of that. test/unit/revocation-snapshot.test.ts
 * holds the output to the reflective decoder.
 *
 * @example
 * ```ts
 * const data = await encodeRevocationSnapshot(set.entries(Date.now()), { streamSequence: 42, streamCreated }, Date.now());
 * ```
 */
export async function encodeRevocationSnapshot(entries: Iterable<RevocationEntry>, at: SnapshotPosition, now: number): Promise<Uint8Array> {
  const out = new WireOut();
  out.byte(0x08).varint(at.streamSequence); // 1: stream_sequence
  out.byte(0x12).timestamp(at.streamCreated); // 2: stream_created
  out.byte(0x1a).timestamp(now); // 3: created_at
  let n = 0;
  for (const e of entries) {
    const userId = e.userId ? Buffer.byteLength(e.userId) : 0;
    const key = e.kind === "token" ? e.jti ?? "" : e.kind === "session" ? e.sid ?? "" : "";
    const keyBytes = Buffer.byteLength(key);
    const target = e.kind === "user" ? 1 + varintSize(e.notBefore ?? 0) : 1 + varintSize(keyBytes) + keyBytes;
    const expiry = timestampSize(e.expiresAt);
    const length =
      (userId ? 1 + varintSize(userId) + userId : 0) + 1 + varintSize(target) + target + 1 + varintSize(e.reason) + 1 + varintSize(expiry) + expiry;
    out.byte(0x22).varint(length); // 4: revocations
    if (userId) out.byte(0x12).varint(userId).utf8(e.userId!, userId); // 2: user_id
    if (e.kind === "user") out.byte(0x2a).varint(target).byte(0x08).varint(e.notBefore ?? 0); // 5: user { 1: not_before }
    else out.byte(e.kind === "token" ? 0x1a : 0x22).varint(target).byte(0x0a).varint(keyBytes).utf8(key, keyBytes); // 3: token / 4: session { 1: id }
    out.byte(0x30).varint(e.reason); // 6: reason
    out.byte(0x42).timestamp(e.expiresAt); // 8: expires_at
    if (++n % ENTRIES_PER_SLICE === 0) await new Promise((r) => setImmediate(r));
  }
  return out.finish();
}

/** Appends protobuf wire primitives to a buffer that doubles when full. */
class WireOut {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;

  byte(b: number): this {
    this.room(1);
    this.buf[this.pos++] = b;
    return this;
  }

  /** A varint of an integer below 2^53; negative ones take ten bytes, as for int64. */
  varint(value: number): this {
    this.room(10);
    this.pos = writeVarint64(value < 0 ? BigInt.asUintN(64, BigInt(value)) : value, this.buf, this.pos);
    return this;
  }

  utf8(text: string, bytes: number): this {
    this.room(bytes);
    this.pos += this.buf.write(text, this.pos, "utf8");
    return this;
  }

  /** A length-prefixed google.protobuf.Timestamp of `ms`. */
  timestamp(ms: number): this {
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms - seconds * 1000) * 1_000_000;
    this.varint(timestampSize(ms)).byte(0x08).varint(seconds);
    if (nanos) this.byte(0x10).varint(nanos);
    return this;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }
}

function varintSize(value: number): number {
  return value < 0 ? 10 : varint64Size(value);
}

function timestampSize(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  return 1 + varintSize(seconds) + (nanos ? 1 + varintSize(nanos) : 0);
}

/**
 * Reads a snapshot's position, skipping its entries; throws on malformed data.
 * Check the position against the stream before applying the entries.
 */
export function readSnapshotPosition(data: Uint8Array): SnapshotPosition {
  const r = new BinaryReader(data);
  let streamSequence = 0;
  let streamCreated = 0;
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1) streamSequence = Number(r.uint64());
    else if (field === 2) streamCreated = readTimestampMs(r);
    else r.skip(wireType);
  }
  return { streamSequence, streamCreated };
}

/**
 * Hands each entry of a snapshot to `apply`, decoding one at a time (a copy of
 * 100k decoded entries would only feed the garbage collector); returns how
 * many. Throws on malformed data, possibly after applying some entries: each
 * entry is a real revocation, so the caller may fall back to a full replay.
 */
export function applySnapshotEntries(data: Uint8Array, apply: (entry: RevocationEntry) => void): number {
  const r = new BinaryReader(data);
  let n = 0;
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field !== 4) {
      r.skip(wireType);
      continue;
    }
    const length = r.uint32();
    const start = r.pos;
    if (start + length > r.len) throw new RangeError("premature EOF");
    const entry = readRevocationEntry(data.subarray(start, start + length));
    r.pos = start + length;
    if (!entry) throw new RangeError("snapshot entry without a target");
    apply(entry);
    n++;
  }
  return n;
}
