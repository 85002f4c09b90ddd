// The verifier library's public API; everything else in this folder is internal.
export { createVerifier } from "./verifier.js";
export type { Verifier, VerifierStatus, RevocationAppliedListener } from "./verifier.js";
export { registerVerifierMetrics } from "./verifier-metrics.js";
export type { VerifierMetricsOptions } from "./verifier-metrics.js";
export type { VerifierOptions } from "./verifier-options.js";
export type { VerifierLogger } from "./verifier-logger.js";
export type { VerifyResult, InvalidReason } from "./verifier-result.js";
export type { RevocationFeed, FeedSink, RevocationEntry } from "./revocation-feed.js";
export { verifyAccessToken } from "./verify-access-token.js";
export type { AccessTokenClaims, VerifyOptions, VerificationKey } from "./verify-access-token.js";
// The production feed: the authority's revocation stream on NATS JetStream.
export { NatsRevocationFeed } from "../events/nats-revocation-feed.js";
export type { NatsRevocationFeedOptions, LoadedSnapshot } from "../events/nats-revocation-feed.js";
