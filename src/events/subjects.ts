/**
 * The NATS subjects and JetStream streams of the authority's events. The
 * version is part of every subject so a v2 can be published beside v1.
 * Payloads are the messages of proto/sessionauthority/v1/events.proto.
 */
export const SUBJECTS = {
  revokedToken: "sa.v1.revocation.token",
  revokedSession: "sa.v1.revocation.session",
  revokedUser: "sa.v1.revocation.user",
  keys: "sa.v1.keys",
  security: (type: string) => `sa.v1.security.${type}`,
} as const;

/**
 * SA_REVOCATIONS keeps revocations and key changes for as long as an access
 * token can live (plus skew): replaying it from the start rebuilds the whole
 * live revocation set. SA_SECURITY keeps security events for alerting.
 */
export const STREAMS = {
  revocations: { name: "SA_REVOCATIONS", subjects: ["sa.v1.revocation.>", "sa.v1.keys"] },
  security: { name: "SA_SECURITY", subjects: ["sa.v1.security.>"], maxAgeMs: 30 * 86_400_000 },
} as const;

/**
 * The compacted revocation set (RevocationSnapshot in events.proto), kept in a
 * JetStream object store so a verifier's cold start loads one object and then
 * reads only the stream's tail, instead of every message of the stream.
 */
export const SNAPSHOTS = { bucket: "SA_REVOCATION_SNAPSHOTS", object: "revocations.v1" } as const;
