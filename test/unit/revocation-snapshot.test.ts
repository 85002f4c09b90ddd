// The revocation snapshot: what the writer encodes is what events.proto says
// (checked with the reflective decoder), and a set rebuilt from it answers
// every check as the set it was taken from.
import { fromBinary } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { applySnapshotEntries, encodeRevocationSnapshot, readSnapshotPosition } from '../../src/events/revocation-snapshot.js';
import { RevocationSnapshotSchema } from '../../src/gen/sessionauthority/v1/events_pb.js';
import type { RevocationEntry } from '../../src/verifier/revocation-feed.js';
import { RevocationSet } from '../../src/verifier/revocation-set.js';
import { ConfigError, loadSidecarConfig } from '../../src/config/config.js';

const NOW = 1_767_225_600_000;
const AT = { streamSequence: 123_456, streamCreated: NOW - 3_600_123 };

describe('revocation snapshot', () => {
  const entries: RevocationEntry[] = [
    { kind: 'token', jti: 'jti-1', reason: 1, expiresAt: NOW + 60_000 },
    { kind: 'session', sid: 's-1', reason: 2, expiresAt: NOW + 900_500 },
    { kind: 'user', userId: 'u-1', notBefore: NOW / 1000 - 5, reason: 4, expiresAt: NOW + 930_000 },
  ];

  it('is a RevocationSnapshot as events.proto defines it', async () => {
    const data = await encodeRevocationSnapshot(entries, AT, NOW);
    const s = fromBinary(RevocationSnapshotSchema, data);
    expect(s.streamSequence).toBe(123_456n);
    expect(timestampDate(s.streamCreated!).getTime()).toBe(AT.streamCreated);
    expect(timestampDate(s.createdAt!).getTime()).toBe(NOW);
    expect(s.revocations.map((r) => [r.target.case, r.reason, timestampDate(r.expiresAt!).getTime()])).toEqual([
      ['token', 1, NOW + 60_000],
      ['session', 2, NOW + 900_500],
      ['user', 4, NOW + 930_000],
    ]);
    expect(s.revocations[0]!.target.value).toMatchObject({ tokenId: 'jti-1' });
    expect(s.revocations[1]!.target.value).toMatchObject({ sessionId: 's-1' });
    expect(s.revocations[2]!.userId).toBe('u-1');
    expect(s.revocations[2]!.target.value).toMatchObject({ notBefore: BigInt(NOW / 1000 - 5) });
  });

  it('writes odd values as the reflective decoder reads them: multi-byte text, big sequences, negative times, wide reasons', async () => {
    const odd: RevocationEntry[] = [
      { kind: 'session', sid: 'sé-ß-😀', userId: 'ü'.repeat(70), reason: 300, expiresAt: NOW + 123 },
      { kind: 'user', userId: 'u', notBefore: -5, reason: 1, expiresAt: -1500 },
    ];
    const at = { streamSequence: 2 ** 40 + 7, streamCreated: NOW };
    const s = fromBinary(RevocationSnapshotSchema, await encodeRevocationSnapshot(odd, at, NOW));
    expect(s.streamSequence).toBe(BigInt(2 ** 40 + 7));
    expect(s.revocations[0]!.target.value).toMatchObject({ sessionId: 'sé-ß-😀' });
    expect(s.revocations[0]!.userId).toBe('ü'.repeat(70));
    expect(s.revocations[0]!.reason).toBe(300);
    expect(timestampDate(s.revocations[0]!.expiresAt!).getTime()).toBe(NOW + 123);
    expect(s.revocations[1]!.target.value).toMatchObject({ notBefore: -5n });
    expect(timestampDate(s.revocations[1]!.expiresAt!).getTime()).toBe(-1500);
  });

  it('reads back its position and its entries', async () => {
    const data = await encodeRevocationSnapshot(entries, AT, NOW);
    expect(readSnapshotPosition(data)).toEqual(AT);
    const read: RevocationEntry[] = [];
    expect(applySnapshotEntries(data, (e) => read.push(e))).toBe(3);
    expect(read).toEqual([
      { kind: 'token', jti: 'jti-1', sid: '', userId: '', reason: 1, expiresAt: NOW + 60_000 },
      { kind: 'session', sid: 's-1', userId: '', reason: 2, expiresAt: NOW + 900_500 },
      { kind: 'user', userId: 'u-1', notBefore: NOW / 1000 - 5, reason: 4, expiresAt: NOW + 930_000 },
    ]);
  });

  it('rebuilds a set that answers every check as the original, expired entries left out', async () => {
    const original = new RevocationSet();
    for (let i = 0; i < 20_000; i++) original.apply({ kind: 'session', sid: `s${i}`, reason: 2, expiresAt: NOW + 1000 + i * 50 }, NOW);
    for (let i = 0; i < 100; i++) original.apply({ kind: 'token', jti: `j${i}`, reason: 1, expiresAt: NOW + 5000 }, NOW);
    original.apply({ kind: 'user', userId: 'u', notBefore: NOW / 1000, reason: 3, expiresAt: NOW + 10_000 }, NOW);
    const later = NOW + 3000; // a fraction of the sessions has expired by then
    const data = await encodeRevocationSnapshot(original.entries(later), AT, later);
    const rebuilt = new RevocationSet();
    const count = applySnapshotEntries(data, (e) => rebuilt.apply(e, later));
    // Expiry is held in whole seconds, rounded up: s0..s40 end by NOW + 3 s.
    expect(count).toBe(20_000 - 41 + 100 + 1);
    for (const t of [later, NOW + 4000, NOW + 9000, NOW + 200_000]) {
      for (let i = 0; i < 20_000; i += 7) {
        const claims = { jti: `j${i % 150}`, sid: `s${i}`, sub: i % 2 ? 'u' : 'v', iat: NOW / 1000 - 1 };
        expect(rebuilt.check(claims, t)).toEqual(original.check(claims, t));
      }
    }
  });

  it('refuses truncated data', async () => {
    const data = await encodeRevocationSnapshot(entries, AT, NOW);
    expect(() => applySnapshotEntries(data.subarray(0, data.length - 3), () => {})).toThrow();
    expect(() => readSnapshotPosition(data.subarray(0, data.length - 3))).toThrow();
  });
});

describe('SA_SIDECAR_SNAPSHOTS', () => {
  const base = { NATS_URL: 'nats://127.0.0.1:4222' };
  it('is on by default and can be turned off', () => {
    expect(loadSidecarConfig(base).snapshots).toBe(true);
    expect(loadSidecarConfig({ ...base, SA_SIDECAR_SNAPSHOTS: 'off' }).snapshots).toBe(false);
  });
  it('refuses anything but on or off, naming the key', () => {
    for (const bad of ['yes', 'true', '', 'OFF']) {
      let error: unknown;
      try {
        loadSidecarConfig({ ...base, SA_SIDECAR_SNAPSHOTS: bad });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).key).toBe('SA_SIDECAR_SNAPSHOTS');
    }
  });
});
