import { createHash, timingSafeEqual } from "node:crypto";
import type { ApiKeyConfig, Scope } from "../config/config.js";
import { AuthorityError } from "../shared/errors.js";
import type { AccessTokenClaims } from "../verifier/verify-access-token.js";
import type { SessionService } from "./session-service.js";

/** Who is calling: a service holding an API key, a user holding an access token, or nobody. */
export type Caller =
  | { kind: "service"; name: string; scopes: ReadonlySet<Scope> }
  | { kind: "user"; claims: AccessTokenClaims }
  | { kind: "anonymous" };

interface KnownKey {
  name: string;
  hash: Buffer;
  scopes: ReadonlySet<Scope>;
}

/**
 * Authenticates the `authorization` header: `ApiKey <key>` for services (only the
 * SHA-256 of each key is configured, compared in constant time) or
 * `Bearer <access token>` for users (validated against revocations).
 */
export class CallerAuthenticator {
  private readonly keys: KnownKey[];

  constructor(apiKeys: ApiKeyConfig[], private readonly sessions: SessionService) {
    this.keys = apiKeys.map((k) => ({ name: k.name, hash: Buffer.from(k.sha256, "hex"), scopes: new Set(k.scopes) }));
  }

  async authenticate(authorization: string | undefined): Promise<Caller> {
    if (!authorization) return { kind: "anonymous" };
    const match = /^(\S+) +(\S+)$/.exec(authorization.trim());
    const scheme = match?.[1]?.toLowerCase();
    if (scheme === "apikey") return this.service(match![2]!);
    if (scheme === "bearer") {
      const result = await this.sessions.validate(match![2]!);
      if (!result.valid) throw new AuthorityError("unauthenticated", `access token rejected: ${result.reason}`);
      return { kind: "user", claims: result.claims };
    }
    throw new AuthorityError("unauthenticated", "authorization must be 'Bearer <access token>' or 'ApiKey <key>'");
  }

  private service(key: string): Caller {
    const hash = hashApiKey(key);
    let found: KnownKey | undefined;
    // Compare against every key so timing does not reveal which prefix matched.
    for (const known of this.keys) if (timingSafeEqual(known.hash, hash)) found = known;
    if (!found) throw new AuthorityError("unauthenticated", "unknown API key");
    return { kind: "service", name: found.name, scopes: found.scopes };
  }
}

export function hashApiKey(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}

export function requireScope(caller: Caller, scope: Scope): void {
  if (caller.kind === "anonymous") throw new AuthorityError("unauthenticated", `this call needs a service API key with scope ${scope}`);
  if (caller.kind === "user") throw new AuthorityError("permission_denied", `this call needs a service API key with scope ${scope}, not a user token`);
  if (!caller.scopes.has(scope)) throw new AuthorityError("permission_denied", `API key "${caller.name}" lacks scope ${scope}`);
}

export function requireUser(caller: Caller): AccessTokenClaims {
  if (caller.kind === "user") return caller.claims;
  if (caller.kind === "anonymous") throw new AuthorityError("unauthenticated", "this call needs the user's access token (authorization: Bearer ...)");
  throw new AuthorityError("permission_denied", "this call is made with the user's own access token, not a service key");
}
