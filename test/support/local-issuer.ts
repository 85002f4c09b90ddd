// A stand-in authority for verifier unit tests: one key pair, a JWKS served by
// a real HTTP server on loopback (so the verifier fetches for real), and a
// signer for tokens with any claims or header.
import { generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { SignJWT, type JWK } from "jose";
import type { Clock } from "../../src/shared/clock.js";

export type LocalAlg = "ES256" | "EdDSA" | "RS256";

export interface KeyPair {
  kid: string;
  alg: LocalAlg;
  publicKey: KeyObject;
  privateKey: KeyObject;
  jwk: JWK;
}

export function newKeyPair(alg: LocalAlg = "ES256", kid = `k-${randomBytes(4).toString("hex")}`): KeyPair {
  const pair =
    alg === "EdDSA" ? generateKeyPairSync("ed25519")
    : alg === "RS256" ? generateKeyPairSync("rsa", { modulusLength: 2048 })
    : generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...(pair.publicKey.export({ format: "jwk" }) as JWK), kid, alg, use: "sig" };
  return { kid, alg, publicKey: pair.publicKey, privateKey: pair.privateKey, jwk };
}

/** What the JWKS endpoint does on the next request. */
export type Behaviour =
  | { kind: "serve"; body: unknown }
  | { kind: "status"; status: number }
  | { kind: "raw"; text: string }
  | { kind: "hang" };

export interface JwksServer {
  url: string;
  /** Requests answered (or left hanging) so far. */
  requests: number;
  behave(b: Behaviour): void;
  close(): Promise<void>;
}

export async function startJwksServer(initial: Behaviour): Promise<JwksServer> {
  let behaviour = initial;
  const hanging = new Set<ServerResponse>();
  const state = { requests: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    state.requests++;
    const b = behaviour;
    if (b.kind === "hang") {
      hanging.add(res);
      return;
    }
    if (b.kind === "status") {
      res.writeHead(b.status).end("nope");
      return;
    }
    res.writeHead(200, { "content-type": "application/jwk-set+json" });
    res.end(b.kind === "raw" ? b.text : JSON.stringify(b.body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    get requests() {
      return state.requests;
    },
    behave(b) {
      behaviour = b;
    },
    async close() {
      for (const res of hanging) res.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

export const ISSUER = "https://issuer.test";
export const AUDIENCE = "api";

export interface LocalIssuer {
  key: KeyPair;
  jwks: JwksServer;
  /** A signed token: default claims for `clock`'s now, overridden by `claims`, header by `header`. */
  sign(claims?: Record<string, unknown>, header?: Record<string, unknown>, key?: KeyPair): Promise<string>;
  close(): Promise<void>;
}

export async function startLocalIssuer(clock: Clock, alg: LocalAlg = "ES256"): Promise<LocalIssuer> {
  const key = newKeyPair(alg);
  const jwks = await startJwksServer({ kind: "serve", body: { keys: [key.jwk] } });
  return {
    key,
    jwks,
    sign(claims = {}, header = {}, signer = key) {
      const now = Math.floor(clock.now() / 1000);
      const body = {
        iss: ISSUER, aud: AUDIENCE, sub: "user-1", sid: `s-${randomBytes(6).toString("hex")}`, jti: randomBytes(12).toString("base64url"),
        client_id: "default", username: "alice", roles: ["user"], permissions: ["read"], iat: now, exp: now + 900,
        ...claims,
      };
      return new SignJWT(body).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: "at+jwt", ...header }).sign(signer.privateKey);
    },
    close: () => jwks.close(),
  };
}
