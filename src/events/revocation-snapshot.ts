import { BinaryWriter, BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { RevocationEntry } from "../verifier/revocation-feed.js";
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
 * RevocationSnapshot (events.proto) of the given entries, written with the wire
 * writer directly: reflection costs several times as much for 100k entries.
 *
 * @example
 * ```ts
 * const data = await encodeRevocationSnapshot(set.entries(Date.now()), { streamSequence: 42, streamCreated }, Date.now());
 * ```
 */
export async function encodeRevocationSnapshot(entries: Iterable<RevocationEntry>, at: SnapshotPosition, now: number): Promise<Uint8Array> {
  const w = new BinaryWriter();
  w.tag(1, WireType.Varint).uint64(at.streamSequence);
  timestamp(w.tag(2, WireType.LengthDelimited), at.streamCreated);
  timestamp(w.tag(3, WireType.LengthDelimited), now);
  let n = 0;
  for (const e of entries) {
    w.tag(4, WireType.LengthDelimited).fork();
    if (e.userId) w.tag(2, WireType.LengthDelimited).string(e.userId);
    if (e.kind === "token") w.tag(3, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(e.jti ?? "").join();
    else if (e.kind === "session") w.tag(4, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(e.sid ?? "").join();
    else w.tag(5, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int64(e.notBefore ?? 0).join();
    w.tag(6, WireType.Varint).int32(e.reason);
    timestamp(w.tag(8, WireType.LengthDelimited), e.expiresAt);
    w.join();
    if (++n % ENTRIES_PER_SLICE === 0) await new Promise((r) => setImmediate(r));
  }
  return w.finish();
}

function timestamp(w: BinaryWriter, ms: number): void {
  const seconds = Math.floor(ms / 1000);
  w.fork().tag(1, WireType.Varint).int64(seconds);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  if (nanos) w.tag(2, WireType.Varint).int32(nanos);
  w.join();
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
