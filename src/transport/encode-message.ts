import { ScalarType, toBinary, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { varint32Size, varint64Size, writeVarint32, writeVarint64 } from "../shared/varint.js";

/**
 * A message's protobuf binary encoding, sized first and written straight into
 * one Buffer, optionally after `headroom` bytes left for the caller (the gRPC
 * frame prefix). protobuf-es's toBinary goes through its reflection wrapper and
 * a writer that collects chunks and joins them per nested message; on the
 * authority's hot path that was about a quarter of all allocation per Refresh,
 * and the garbage showed up as GC pauses in the tail latency.
 *
 * The bytes are toBinary's, byte for byte (test/unit/encode-message.test.ts holds
 * them to it across every message type we define). What this encoder does not
 * handle (map fields, group encoding, required fields, unknown fields carried
 * along, or a value toBinary would reject) goes to toBinary itself, so its
 * behaviour and its errors stay the reference.
 */
export function encodeMessage(desc: DescMessage, message: object, headroom = 0): Buffer {
  // The sizes pass and the writing pass share module state; a field getter that
  // encodes another message meanwhile is left to toBinary rather than let clobber it.
  if (encoding) return viaToBinary(desc, message, headroom);
  encoding = true;
  try {
    lengths.length = 0;
    const plan = planOf(desc);
    let size;
    try {
      size = sizeOf(plan, message);
    } catch (error) {
      if (error !== FALLBACK) throw error;
      return viaToBinary(desc, message, headroom);
    }
    const out = Buffer.allocUnsafe(headroom + size);
    next = 0;
    writeMessage(plan, message, out, headroom);
    return out;
  } finally {
    encoding = false;
  }
}

function viaToBinary(desc: DescMessage, message: object, headroom: number): Buffer {
  const bytes = toBinary(desc, message as never);
  const out = Buffer.allocUnsafe(headroom + bytes.length);
  out.set(bytes, headroom);
  return out;
}

/** A message this encoder leaves to toBinary. */
const FALLBACK = Symbol("fallback to toBinary");
const IMPLICIT = 2; // google.protobuf.FeatureSet.FieldPresence.IMPLICIT
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const FLOAT32_MAX = 3.4028234663852886e38;
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/**
 * Byte lengths of length-delimited values (strings, bytes, nested messages,
 * packed lists) in the order the sizing pass meets them; the writing pass
 * takes them in the same order, so nothing is measured twice.
 */
const lengths: number[] = [];
let next = 0;
let encoding = false;

interface FieldPlan {
  field: DescField;
  name: string;
  /** The oneof's property name, when the field is a member of one. */
  oneof: string | undefined;
  /** The encoded key (field number and wire type) of one value, and of a packed list. */
  key: number[];
  packedKey: number[];
  kind: "scalar" | "message" | "list";
  scalar: ScalarType;
  explicit: boolean;
  packed: boolean;
  /** The value an implicit-presence enum field is left out at. */
  enumZero: number;
  message: DescMessage | undefined;
}

interface MessagePlan {
  typeName: string;
  fields: FieldPlan[];
  /** Set when some field needs what this encoder leaves to toBinary. */
  unsupported: boolean;
}

const plans = new WeakMap<DescMessage, MessagePlan>();

function planOf(desc: DescMessage): MessagePlan {
  let plan = plans.get(desc);
  if (plan) return plan;
  plan = { typeName: desc.typeName, fields: [], unsupported: false };
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number)) {
    const messageField = field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message") ? field : undefined;
    if (field.fieldKind === "map" || field.presence === 3 || messageField?.delimitedEncoding) {
      plan.unsupported = true;
      break;
    }
    const scalar = field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar") ? field.scalar : ScalarType.INT32;
    const messageDesc = messageField?.message;
    plan.fields.push({
      field,
      name: field.localName,
      oneof: field.oneof?.localName,
      key: varintBytes(field.number * 8 + (messageDesc ? 2 : wireTypeOf(scalar))),
      packedKey: varintBytes(field.number * 8 + 2),
      kind: field.fieldKind === "list" ? "list" : messageDesc ? "message" : "scalar",
      scalar,
      explicit: field.fieldKind !== "list" && field.presence !== IMPLICIT,
      packed: field.fieldKind === "list" && field.packed,
      enumZero: field.fieldKind === "enum" ? field.enum.values[0]!.number : 0,
      message: messageDesc,
    });
  }
  plans.set(desc, plan);
  return plan;
}

/**
 * The value of `f` to encode, or undefined when the field is not set (toBinary's
 * isSet); a shape toBinary would stumble on is left to toBinary.
 */
function valueOf(f: FieldPlan, message: Record<string, unknown>): unknown {
  if (f.oneof !== undefined) {
    const oneof = message[f.oneof] as { case?: string; value?: unknown } | undefined;
    if (oneof === undefined) throw FALLBACK;
    if (oneof.case !== f.name) return undefined;
    // Selected but without a value: toBinary writes the field's default.
    if (oneof.value === undefined) throw FALLBACK;
    return oneof.value;
  }
  const value = message[f.name];
  if (f.explicit) return value !== undefined && Object.prototype.hasOwnProperty.call(message, f.name) ? value : undefined;
  if (value === undefined) throw FALLBACK;
  if (f.kind === "list") {
    if (!Array.isArray(value)) throw FALLBACK;
    return value.length > 0 ? value : undefined;
  }
  if (f.field.fieldKind === "enum") return value !== f.enumZero ? value : undefined;
  return isZero(f.scalar, value) ? undefined : value;
}

function isZero(type: ScalarType, value: unknown): boolean {
  switch (type) {
    case ScalarType.BOOL:
      return value === false;
    case ScalarType.STRING:
      return value === "";
    case ScalarType.BYTES:
      return value instanceof Uint8Array && value.byteLength === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Object.is(value, 0);
    default:
      // eslint-disable-next-line eqeqeq -- 0, 0n and "0" alike, as toBinary
      return value == 0;
  }
}

function sizeOf(plan: MessagePlan, message: object): number {
  if (typeof message !== "object" || message === null) throw FALLBACK;
  const m = message as Record<string, unknown>;
  // toBinary refuses a message of another type (or a plain object) with its own error.
  if (plan.unsupported || m.$typeName !== plan.typeName || (m.$unknown as unknown[] | undefined)?.length) throw FALLBACK;
  let size = 0;
  for (const f of plan.fields) {
    const value = valueOf(f, m);
    if (value === undefined) continue;
    if (f.kind === "message") {
      size += nestedSize(f, value as object);
    } else if (f.kind === "scalar") {
      size += f.key.length + scalarSize(f.scalar, value);
    } else if (f.message) {
      for (const item of value as object[]) size += nestedSize(f, item);
    } else if (f.packed) {
      const at = lengths.push(0) - 1;
      let inner = 0;
      for (const item of value as unknown[]) inner += scalarSize(f.scalar, item);
      lengths[at] = inner;
      size += f.packedKey.length + varint32Size(inner) + inner;
    } else {
      for (const item of value as unknown[]) size += f.key.length + scalarSize(f.scalar, item);
    }
  }
  return size;
}

/** Bytes of one nested message with its key and length prefix; records its length before those inside it. */
function nestedSize(f: FieldPlan, message: object): number {
  const at = lengths.push(0) - 1;
  const inner = sizeOf(planOf(f.message!), message);
  lengths[at] = inner;
  return f.key.length + varint32Size(inner) + inner;
}

/** Bytes of one scalar value after its key (with its length prefix if delimited); records delimited lengths. */
function scalarSize(type: ScalarType, value: unknown): number {
  switch (type) {
    case ScalarType.STRING: {
      if (typeof value !== "string") throw FALLBACK;
      const n = Buffer.byteLength(value, "utf8");
      lengths.push(n);
      return varint32Size(n) + n;
    }
    case ScalarType.BYTES: {
      if (!(value instanceof Uint8Array)) throw FALLBACK;
      lengths.push(value.byteLength);
      return varint32Size(value.byteLength) + value.byteLength;
    }
    case ScalarType.BOOL:
      if (typeof value !== "boolean") throw FALLBACK;
      return 1;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      checkScalar(type, value);
      return 8;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      checkScalar(type, value);
      return 4;
    case ScalarType.INT32:
      checkScalar(type, value);
      return (value as number) < 0 ? 10 : varint32Size(value as number);
    case ScalarType.UINT32:
      checkScalar(type, value);
      return varint32Size(value as number);
    case ScalarType.SINT32:
      checkScalar(type, value);
      return varint32Size(zigzag32(value as number));
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
      return varint64Size(unsigned64(type, value));
  }
  throw FALLBACK;
}

/** Throws FALLBACK for a value toBinary's writer would reject, so toBinary raises its own error. */
function checkScalar(type: ScalarType, value: unknown): void {
  switch (type) {
    case ScalarType.DOUBLE:
      if (typeof value !== "number") throw FALLBACK;
      return;
    case ScalarType.FLOAT:
      if (typeof value !== "number" || (Number.isFinite(value) && (value > FLOAT32_MAX || value < -FLOAT32_MAX))) throw FALLBACK;
      return;
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      if (typeof value !== "number" || !Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) throw FALLBACK;
      return;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > UINT32_MAX) throw FALLBACK;
      return;
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      unsigned64(type, value);
  }
}

/**
 * A 64-bit value as the unsigned integer whose varint (or fixed64) is written:
 * two's complement for negative int64, zigzag for sint64. A number when it is
 * below 2^53, so the common case stays off BigInt arithmetic.
 */
function unsigned64(type: ScalarType, value: unknown): number | bigint {
  let v: bigint;
  if (typeof value === "bigint") {
    if (value >= 0n && value <= 0x1fffffffffffffn && type !== ScalarType.SINT64) return Number(value);
    v = value;
  } else if (typeof value === "number" && Number.isSafeInteger(value)) {
    if (value >= 0 && type !== ScalarType.SINT64) return value;
    v = BigInt(value);
  } else if (typeof value === "string" && /^-?[0-9]+$/.test(value)) {
    v = BigInt(value);
  } else {
    throw FALLBACK;
  }
  const signed = type === ScalarType.INT64 || type === ScalarType.SINT64 || type === ScalarType.SFIXED64;
  if (signed ? v < I64_MIN || v > I64_MAX : v < 0n || v > U64_MAX) throw FALLBACK;
  if (type === ScalarType.SINT64) v = v >= 0n ? v << 1n : (-v << 1n) - 1n;
  return v < 0n ? BigInt.asUintN(64, v) : v <= 0x1fffffffffffffn ? Number(v) : v;
}

function writeMessage(plan: MessagePlan, message: object, out: Buffer, pos: number): number {
  const m = message as Record<string, unknown>;
  for (const f of plan.fields) {
    const value = valueOf(f, m);
    if (value === undefined) continue;
    if (f.kind === "message") {
      pos = writeNested(f, value as object, out, pos);
    } else if (f.kind === "scalar") {
      pos = writeScalar(f.scalar, value, out, writeKey(f.key, out, pos));
    } else if (f.message) {
      for (const item of value as object[]) pos = writeNested(f, item, out, pos);
    } else if (f.packed) {
      pos = writeVarint32(lengths[next++]!, out, writeKey(f.packedKey, out, pos));
      for (const item of value as unknown[]) pos = writeScalar(f.scalar, item, out, pos);
    } else {
      for (const item of value as unknown[]) pos = writeScalar(f.scalar, item, out, writeKey(f.key, out, pos));
    }
  }
  return pos;
}

/** One nested message with its key and the length nestedSize recorded. */
function writeNested(f: FieldPlan, message: object, out: Buffer, pos: number): number {
  pos = writeVarint32(lengths[next++]!, out, writeKey(f.key, out, pos));
  return writeMessage(planOf(f.message!), message, out, pos);
}

function writeScalar(type: ScalarType, value: unknown, out: Buffer, pos: number): number {
  switch (type) {
    case ScalarType.STRING: {
      const n = lengths[next++]!;
      pos = writeVarint32(n, out, pos);
      out.write(value as string, pos, n, "utf8");
      return pos + n;
    }
    case ScalarType.BYTES: {
      const n = lengths[next++]!;
      pos = writeVarint32(n, out, pos);
      out.set(value as Uint8Array, pos);
      return pos + n;
    }
    case ScalarType.BOOL:
      out[pos] = value ? 1 : 0;
      return pos + 1;
    case ScalarType.DOUBLE:
      return out.writeDoubleLE(value as number, pos);
    case ScalarType.FLOAT:
      return out.writeFloatLE(value as number, pos);
    case ScalarType.FIXED32:
      return out.writeUInt32LE(value as number, pos);
    case ScalarType.SFIXED32:
      return out.writeInt32LE(value as number, pos);
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return out.writeBigUInt64LE(BigInt(unsigned64(type, value)), pos);
    case ScalarType.INT32:
      return (value as number) < 0 ? writeVarint64(BigInt.asUintN(64, BigInt(value as number)), out, pos) : writeVarint32(value as number, out, pos);
    case ScalarType.UINT32:
      return writeVarint32(value as number, out, pos);
    case ScalarType.SINT32:
      return writeVarint32(zigzag32(value as number), out, pos);
    default:
      // INT64, UINT64, SINT64
      return writeVarint64(unsigned64(type, value), out, pos);
  }
}

function writeKey(key: number[], out: Buffer, pos: number): number {
  for (const b of key) out[pos++] = b;
  return pos;
}

function zigzag32(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}

function wireTypeOf(type: ScalarType): number {
  switch (type) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return 2;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return 1;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return 5;
    default:
      return 0;
  }
}

function varintBytes(value: number): number[] {
  const bytes: number[] = [];
  for (; value > 0x7f; value >>>= 7) bytes.push((value & 0x7f) | 0x80);
  bytes.push(value);
  return bytes;
}
