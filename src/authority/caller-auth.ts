import { hash, timingSafeEqual } from "node:crypto";
import type { ApiKeyConfig, MtlsIdentityConfig, Scope } from "../config/config.js";
import { AuthorityError } from "../shared/errors.js";
import type { CallContext, ClientCertificate } from "../transport/call-context.js";
import type { AccessTokenClaims } from "../verifier/verify-access-token.js";
import type { SessionService } from "./session-service.js";

/** Who is calling: a service (API key or client certificate), a user holding an access token, or nobody. */
export type Caller =
  | { kind: "service"; name: string; scopes: ReadonlySet<Scope>; credential: "API key" | "client certificate" }
  | { kind: "user"; claims: AccessTokenClaims }
  | { kind: "anonymous" };

interface KnownKey {
  name: string;
  hash: Buffer;
  scopes: ReadonlySet<Scope>;
}

interface KnownIdentity {
  name: string;
  scopes: ReadonlySet<Scope>;
}

/**
 * Authenticates the `authorization` header: `ApiKey <key>` for services (only the
 * SHA-256 of each key is configured, compared in constant time) or
 * `Bearer <access token>` for users (validated against revocations). Without
 * the header, a verified client certificate listed in SA_MTLS_IDENTITIES is a
 * service. The header wins so that a service holding a certificate can still act
 * with a narrower key or for a user, and a bad header is never rescued by the
 * certificate.
 */
export class CallerAuthenticator {
  private readonly keys: KnownKey[];
  private readonly identities: Map<string, KnownIdentity>;

  constructor(apiKeys: ApiKeyConfig[], mtlsIdentities: MtlsIdentityConfig[], private readonly sessions: SessionService) {
    this.keys = apiKeys.map((k) => ({ name: k.name, hash: Buffer.from(k.sha256, "hex"), scopes: new Set(k.scopes) }));
    this.identities = new Map(mtlsIdentities.map((i) => [i.subject, { name: i.name, scopes: new Set(i.scopes) }]));
  }

  async authenticate(context: Pick<CallContext, "header" | "clientCertificate">): Promise<Caller> {
    const authorization = context.header("authorization");
    if (!authorization) {
      const certificate = this.identities.size ? context.clientCertificate?.() : undefined;
      return certificate ? this.certified(certificate) : { kind: "anonymous" };
    }
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
    return { kind: "service", name: found.name, scopes: found.scopes, credential: "API key" };
  }

  /** A certificate no identity lists is no credential, as if none was presented. */
  private certified(certificate: ClientCertificate): Caller {
    const names = certificate.commonName === undefined ? certificate.altNames : [`CN=${certificate.commonName}`, ...certificate.altNames];
    const found = new Set(names.flatMap((n) => this.identities.get(n) ?? []));
    if (found.size > 1) {
      throw new AuthorityError("unauthenticated", `client certificate matches several identities (${[...found].map((i) => i.name).join(", ")})`);
    }
    const [identity] = found;
    return identity ? { kind: "service", name: identity.name, scopes: identity.scopes, credential: "client certificate" } : { kind: "anonymous" };
  }
}

export function hashApiKey(key: string): Buffer {
  return hash("sha256", key, "buffer");
}

export function requireScope(caller: Caller, scope: Scope): void {
  if (caller.kind === "anonymous") throw new AuthorityError("unauthenticated", `this call needs a service API key or client certificate with scope ${scope}`);
  if (caller.kind === "user") throw new AuthorityError("permission_denied", `this call needs a service API key with scope ${scope}, not a user token`);
  if (!caller.scopes.has(scope)) throw new AuthorityError("permission_denied", `${caller.credential} "${caller.name}" lacks scope ${scope}`);
}

export function requireUser(caller: Caller): AccessTokenClaims {
  if (caller.kind === "user") return caller.claims;
  if (caller.kind === "anonymous") throw new AuthorityError("unauthenticated", "this call needs the user's access token (authorization: Bearer ...)");
  throw new AuthorityError("permission_denied", "this call is made with the user's own access token, not a service key");
}
