import { randomFillSync } from "node:crypto";

// Each randomBytes() call is a syscall into the kernel's CSPRNG; on the machines
// measured here that was ~20 µs and several percent of the authority's CPU. Like
// Node's own randomUUID cache, draw from a pool filled 8 KiB at a time. Bytes are
// handed out once and the pool is overwritten on refill.
const POOL_SIZE = 8192;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let offset = POOL_SIZE;

/** `size` cryptographically secure random bytes (a fresh copy, at most 256). */
export function secureRandomBytes(size: number): Buffer {
  if (size > 256) throw new RangeError("secureRandomBytes is for small sizes");
  if (offset + size > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + size));
  pool.fill(0, offset, offset + size);
  offset += size;
  return out;
}
