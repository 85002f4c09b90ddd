import { verify as verifySignature, type KeyObject } from "node:crypto";

/** Algorithms an access token may use. `none` and every HMAC algorithm are refused outright. */
export const ACCEPTED_ALGORITHMS = ["ES256", "EdDSA", "Ed25519", "RS256"] as const;
export type AcceptedAlgorithm = (typeof ACCEPTED_ALGORITHMS)[number];

/**
 * Why a token was refused. The names mirror the proto enum TokenInvalidReason.
 *
 * @example
 * ```ts
 * const result = verifyAccessToken(token, options);
 * if (!result.ok && result.reason === "expired") console.log("ask the client to refresh");
 * ```
 */
export type InvalidReason =
  | "malformed"
  | "too_large"
  | "unsupported_algorithm"
  | "unknown_key"
  | "bad_signature"
  | "wrong_type"
  | "wrong_issuer"
  | "wrong_audience"
  | "expired"
  | "not_yet_valid"
  | "revoked";

/**
 * A public key together with the one algorithm it may verify.
 *
 * @example
 * ```ts
 * import { createPublicKey } from "node:crypto";
 * const key: VerificationKey = { alg: "ES256", key: createPublicKey({ key: jwk, format: "jwk" }) };
 * ```
 */
export interface VerificationKey {
  alg: AcceptedAlgorithm;
  key: KeyObject;
}

/**
 * The claims of an access token (RFC 9068 plus the session authority's own).
 * Times are seconds since the epoch; `sub` is the user id, `sid` the session.
 *
 * @example
 * ```ts
 * const result = await verifier.verify(token);
 * if (result.ok && result.claims.permissions.includes("orders:write")) placeOrder(result.claims.sub);
 * ```
 */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  sid: string;
  username: string;
  roles: string[];
  permissions: string[];
}

/**
 * The outcome of `verifyAccessToken`.
 *
 * @example
 * ```ts
 * const result: VerifyResult = verifyAccessToken(token, options);
 * console.log(result.ok ? result.claims.sub : `${result.reason}: ${result.message}`);
 * ```
 */
export type VerifyResult =
  | { ok: true; claims: AccessTokenClaims }
  | { ok: false; reason: InvalidReason; message: string };

/**
 * What `verifyAccessToken` checks a token against.
 *
 * @example
 * ```ts
 * const options: VerifyOptions = {
 *   key: (kid) => keys.get(kid), issuer: "https://auth.example.com", audience: "api",
 *   clockSkewMs: 30_000, maxTokenBytes: 8192, now: Date.now(),
 * };
 * ```
 */
export interface VerifyOptions {
  /** Looks a key up by kid, in memory only: never fetched because a token says so. */
  key: (kid: string) => VerificationKey | undefined;
  issuer: string;
  audience: string;
  /** Tolerance for clocks that disagree, in milliseconds. */
  clockSkewMs: number;
  /** Tokens longer than this are refused before any parsing. */
  maxTokenBytes: number;
  now: number;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const HASH_OF: Record<AcceptedAlgorithm, string | null> = { ES256: "sha256", RS256: "sha256", EdDSA: null, Ed25519: null };

const fail = (reason: InvalidReason, message: string): VerifyResult => ({ ok: false, reason, message });

/**
 * Verifies an access token's signature and claims without any I/O: the caller
 * supplies the keys. Checks run cheapest-first and the signature is verified
 * before any claim is trusted. Header members `jku`, `x5u`, `jwk` and `x5c` are
 * ignored: a token never chooses its own key.
 *
 * @example
 * ```ts
 * const result = verifyAccessToken(token, {
 *   key: (kid) => keys.get(kid),
 *   issuer: "https://auth.example.com",
 *   audience: "api",
 *   clockSkewMs: 30_000,
 *   maxTokenBytes: 8192,
 *   now: Date.now(),
 * });
 * if (!result.ok) console.log(result.reason); // "expired", "bad_signature", ...
 * ```
 */
export function verifyAccessToken(token: string, options: VerifyOptions): VerifyResult {
  if (token.length > options.maxTokenBytes) return fail("too_large", `token exceeds ${options.maxTokenBytes} bytes`);
  const parts = token.split(".");
  // An empty signature is well-formed (that is how `alg: none` looks); the
  // algorithm check below refuses it for what it is.
  if (parts.length !== 3 || !SEGMENT.test(parts[0]!) || !SEGMENT.test(parts[1]!) || !(parts[2] === "" || SEGMENT.test(parts[2]!))) {
    return fail("malformed", "not a compact JWS");
  }
  const header = decodeJson(parts[0]!);
  if (!header) return fail("malformed", "header is not base64url JSON");

  const alg = header.alg;
  if (typeof alg !== "string" || !(ACCEPTED_ALGORITHMS as readonly string[]).includes(alg)) {
    return fail("unsupported_algorithm", `algorithm ${typeof alg === "string" ? JSON.stringify(alg.slice(0, 20)) : "missing"} is not accepted`);
  }
  if (typeof header.crit !== "undefined") return fail("malformed", "crit header parameters are not supported");
  const typ = typeof header.typ === "string" ? header.typ.toLowerCase() : "";
  if (typ !== "at+jwt" && typ !== "application/at+jwt") return fail("wrong_type", "typ must be at+jwt (RFC 9068)");
  if (typeof header.kid !== "string" || !header.kid) return fail("unknown_key", "token has no kid");
  const key = options.key(header.kid);
  if (!key) return fail("unknown_key", "no key with this kid");
  if (!sameFamily(key.alg, alg as AcceptedAlgorithm)) return fail("unsupported_algorithm", `this key only verifies ${key.alg}`);

  const signature = Buffer.from(parts[2]!, "base64url");
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`, "ascii");
  let valid = false;
  try {
    valid = verifySignature(HASH_OF[key.alg], signed, { key: key.key, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    valid = false;
  }
  if (!valid) return fail("bad_signature", "signature does not verify");

  const claims = decodeJson(parts[1]!);
  if (!claims) return fail("malformed", "payload is not base64url JSON");
  const shapeError = checkShape(claims);
  if (shapeError) return fail("malformed", shapeError);
  const c = claims as unknown as AccessTokenClaims;

  if (c.iss !== options.issuer) return fail("wrong_issuer", "issuer does not match");
  const audiences = Array.isArray(c.aud) ? c.aud : [c.aud];
  if (!audiences.includes(options.audience)) return fail("wrong_audience", "audience does not match");
  const nowSeconds = options.now / 1000;
  const skew = options.clockSkewMs / 1000;
  if (c.exp <= nowSeconds - skew) return fail("expired", "token has expired");
  if (c.iat > nowSeconds + skew) return fail("not_yet_valid", "token is issued in the future");
  const nbf = (claims as { nbf?: unknown }).nbf;
  if (nbf !== undefined && (typeof nbf !== "number" || nbf > nowSeconds + skew)) return fail("not_yet_valid", "token is not valid yet");
  return { ok: true, claims: c };
}

function sameFamily(keyAlg: AcceptedAlgorithm, tokenAlg: AcceptedAlgorithm): boolean {
  const edwards = (a: string) => a === "EdDSA" || a === "Ed25519";
  return keyAlg === tokenAlg || (edwards(keyAlg) && edwards(tokenAlg));
}

function decodeJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const isString = (v: unknown) => typeof v === "string";
const isStringArray = (v: unknown) => Array.isArray(v) && v.every(isString);

function checkShape(c: Record<string, unknown>): string | undefined {
  for (const name of ["iss", "sub", "jti", "sid", "client_id"] as const) {
    if (!isString(c[name]) || !(c[name] as string)) return `claim ${name} must be a non-empty string`;
  }
  if (!isString(c.aud) && !isStringArray(c.aud)) return "claim aud must be a string or a list of strings";
  for (const name of ["exp", "iat"] as const) {
    if (typeof c[name] !== "number" || !Number.isFinite(c[name])) return `claim ${name} must be a number`;
  }
  if (c.username !== undefined && !isString(c.username)) return "claim username must be a string";
  for (const name of ["roles", "permissions"] as const) {
    if (c[name] !== undefined && !isStringArray(c[name])) return `claim ${name} must be a list of strings`;
  }
  c.username ??= "";
  c.roles ??= [];
  c.permissions ??= [];
  return undefined;
}
