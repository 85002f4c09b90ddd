import { createPublicKey, type JsonWebKey } from "node:crypto";
import { ACCEPTED_ALGORITHMS, type AcceptedAlgorithm, type VerificationKey } from "./verify-access-token.js";

/** The smallest RSA modulus accepted; shorter keys are factorable in practice. */
export const MIN_RSA_BITS = 2048;

/** A JWKS member turned into a key, or the reason it was ignored. */
export type ImportedKey =
  | { ok: true; kid: string; key: VerificationKey }
  | { ok: false; kid: string; problem: string };

const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  EC: ["kty", "crv", "x", "y"],
  OKP: ["kty", "crv", "x"],
  RSA: ["kty", "n", "e"],
};

/**
 * Turns one member of a JWKS document into a verification key, accepting only
 * an algorithm from ACCEPTED_ALGORITHMS on the key type made for it: EC P-256
 * for ES256, OKP Ed25519 for EdDSA/Ed25519, RSA of at least 2048 bits for
 * RS256. The pairing matters: `verifyAccessToken` trusts the key's `alg`, so an
 * Ed448 key labelled EdDSA, or a P-384 key labelled ES256, must never get in.
 *
 * @example
 * ```ts
 * const imported = importVerificationKey({ kty: "OKP", crv: "Ed25519", x: "...", kid: "k1", alg: "EdDSA" });
 * if (imported.ok) keys.set(imported.kid, imported.key);
 * else logger.warn({ kid: imported.kid, problem: imported.problem }, "JWKS key ignored");
 * ```
 */
export function importVerificationKey(member: unknown): ImportedKey {
  if (!member || typeof member !== "object" || Array.isArray(member)) return { ok: false, kid: "", problem: "not a JSON object" };
  const jwk = member as Record<string, unknown>;
  const kid = typeof jwk.kid === "string" ? jwk.kid : "";
  const fail = (problem: string): ImportedKey => ({ ok: false, kid, problem });
  if (!kid) return fail("no kid");
  const alg = jwk.alg;
  if (typeof alg !== "string" || !(ACCEPTED_ALGORITHMS as readonly string[]).includes(alg)) {
    return fail(`alg ${typeof alg === "string" ? JSON.stringify(alg.slice(0, 20)) : "missing"} is not accepted`);
  }
  if (jwk.use !== undefined && jwk.use !== "sig") return fail("use is not sig");
  const typeProblem = checkKeyType(alg as AcceptedAlgorithm, jwk);
  if (typeProblem) return fail(typeProblem);

  // Only the public members: a private `d` published by mistake must not turn
  // into a private key object held here.
  const members = PUBLIC_MEMBERS[jwk.kty as string]!;
  const publicJwk = Object.fromEntries(members.map((name) => [name, jwk[name]])) as JsonWebKey;
  let key;
  try {
    key = createPublicKey({ key: publicJwk, format: "jwk" });
  } catch (e) {
    return fail(`not a valid key: ${(e as Error).message}`);
  }
  if (alg === "RS256") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return fail(`RSA modulus of ${bits} bits is below ${MIN_RSA_BITS}`);
  }
  return { ok: true, kid, key: { alg: alg as AcceptedAlgorithm, key } };
}

function checkKeyType(alg: AcceptedAlgorithm, jwk: Record<string, unknown>): string | undefined {
  const str = (name: string) => typeof jwk[name] === "string" && (jwk[name] as string).length > 0;
  switch (alg) {
    case "ES256":
      return jwk.kty === "EC" && jwk.crv === "P-256" && str("x") && str("y") ? undefined : "ES256 needs an EC P-256 key";
    case "EdDSA":
    case "Ed25519":
      return jwk.kty === "OKP" && jwk.crv === "Ed25519" && str("x") ? undefined : `${alg} needs an OKP Ed25519 key`;
    case "RS256":
      return jwk.kty === "RSA" && str("n") && str("e") ? undefined : "RS256 needs an RSA key";
  }
}
