// Protobuf varints, written straight into a buffer: shared by the encoders that
// skip the library's writer on hot or bulk paths (encode-message.ts,
// revocation-snapshot.ts). Values are unsigned: a caller with a negative int64
// passes its two's complement (BigInt.asUintN(64, ...)).

/** Writes the varint of an unsigned 32-bit value at `pos`; returns the position after it. */
export function writeVarint32(value: number, out: Uint8Array, pos: number): number {
  while (value > 0x7f) {
    out[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[pos++] = value;
  return pos;
}

/** Writes the varint of an unsigned 64-bit value (a number below 2^53, or a bigint) at `pos`; returns the position after it. */
export function writeVarint64(value: number | bigint, out: Uint8Array, pos: number): number {
  if (typeof value === "number") {
    for (; value > 0x7f; value = Math.floor(value / 128)) out[pos++] = (value % 128) | 0x80;
    out[pos++] = value;
    return pos;
  }
  for (; value > 0x7fn; value >>= 7n) out[pos++] = Number(value & 0x7fn) | 0x80;
  out[pos++] = Number(value);
  return pos;
}

/** Bytes of the varint of an unsigned 32-bit value. */
export function varint32Size(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** Bytes of the varint of an unsigned 64-bit value (a number below 2^53, or a bigint). */
export function varint64Size(value: number | bigint): number {
  let size = 1;
  if (typeof value === "number") {
    for (; value > 0x7f; value = Math.floor(value / 128)) size++;
    return size;
  }
  for (; value > 0x7fn; value >>= 7n) size++;
  return size;
}
