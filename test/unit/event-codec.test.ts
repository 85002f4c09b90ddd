// The wire-level reader of revocation events must answer exactly what the
// reflective protobuf decoder answers, for every target and for fields it
// does not know (a newer publisher).
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { decodeStreamMessage, encodeOutboxEvent, readRevocationEntry } from '../../src/events/event-codec.js';
import { RevocationEventSchema } from '../../src/gen/sessionauthority/v1/events_pb.js';

/** What the reflective decoder makes of the bytes, shaped as a RevocationEntry. */
function reference(data: Uint8Array) {
  const e = fromBinary(RevocationEventSchema, data);
  const base = {
    reason: e.reason,
    expiresAt: e.expiresAt ? timestampDate(e.expiresAt).getTime() : 0,
    userId: e.userId,
    ...(e.revokedAt ? { revokedAt: timestampDate(e.revokedAt).getTime() } : {}),
  };
  switch (e.target.case) {
    case 'token': return { ...base, kind: 'token', jti: e.target.value.tokenId, sid: e.target.value.sessionId };
    case 'session': return { ...base, kind: 'session', sid: e.target.value.sessionId };
    case 'user': return { ...base, kind: 'user', notBefore: Number(e.target.value.notBefore) };
    default: return undefined;
  }
}

const word = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + n) % 26))).join('');

describe('readRevocationEntry', () => {
  it('answers as fromBinary for every target, odd values and times included', () => {
    const at = 1_767_225_600_123;
    const cases = [
      { target: { case: 'token' as const, value: { tokenId: 'j-1', sessionId: 's-1' } } },
      { target: { case: 'token' as const, value: { tokenId: 'j-2', sessionId: '' } } },
      { target: { case: 'session' as const, value: { sessionId: word(32) } } },
      { target: { case: 'user' as const, value: { notBefore: 1_767_225_600n } } },
      { target: { case: 'user' as const, value: { notBefore: 0n } } },
      { target: { case: undefined } },
    ];
    for (const [i, c] of cases.entries()) {
      for (const userId of ['', 'ü-ser ✓', word(200)]) {
        const message = create(RevocationEventSchema, {
          id: `e-${i}`, userId, reason: i, ...c,
          revokedAt: i % 2 ? timestampFromMs(at + i) : undefined,
          expiresAt: { seconds: BigInt(Math.floor(at / 1000) + i), nanos: 999_999_999 - i * 1_000_000 },
        });
        const data = toBinary(RevocationEventSchema, message);
        expect(readRevocationEntry(data)).toEqual(reference(data));
      }
    }
  });

  it('skips fields it does not know, and a later target replaces an earlier one as in protobuf', () => {
    const known = toBinary(RevocationEventSchema, create(RevocationEventSchema, {
      userId: 'u', reason: 2, target: { case: 'session', value: { sessionId: 's' } }, expiresAt: timestampFromMs(5000),
    }));
    // Field 40 (varint) and field 41 (length-delimited): unknown to this reader.
    const unknown = Uint8Array.from([0xc0, 0x02, 0x96, 0x01, 0xca, 0x02, 0x03, 0x61, 0x62, 0x63]);
    const later = toBinary(RevocationEventSchema, create(RevocationEventSchema, { target: { case: 'token', value: { tokenId: 'j', sessionId: 's2' } } }));
    for (const data of [Buffer.concat([known, unknown]), Buffer.concat([unknown, known]), Buffer.concat([known, later])]) {
      expect(readRevocationEntry(data)).toEqual(reference(data));
    }
  });

  it('reads what the relay publishes', () => {
    const published = encodeOutboxEvent({ id: 'x', type: 'session_revoked', userId: 'u', sid: 's', reason: 3, at: 1000, expiresAt: 901_000 });
    expect(decodeStreamMessage(published.subject, published.data)).toEqual({
      type: 'revocation', entry: { kind: 'session', sid: 's', userId: 'u', reason: 3, revokedAt: 1000, expiresAt: 901_000 },
    });
  });

  it('refuses truncated or overrunning bytes with an error', () => {
    const data = toBinary(RevocationEventSchema, create(RevocationEventSchema, { userId: 'someone', target: { case: 'session', value: { sessionId: 'abc' } } }));
    expect(() => fromBinary(RevocationEventSchema, data.subarray(0, data.length - 2))).toThrow();
    expect(() => readRevocationEntry(data.subarray(0, data.length - 2))).toThrow();
    // A nested message whose last field runs past the length it declared: refused
    // (stricter than fromBinary, which reads on into the outer message).
    const overrun = Uint8Array.from([0x22, 0x02, 0x0a, 0x03, 0x61, 0x62, 0x63]);
    expect(() => readRevocationEntry(overrun)).toThrow(/nested message length/);
  });
});
