import { createClient, type Transport } from "@connectrpc/connect";
import { LogoutScope, SessionAuthorityService, type RefreshResponse } from "../gen/sessionauthority/v1/authority_pb.js";
import { ClientOptionsError } from "./client-options-error.js";
import { fromConnectError, SessionClientError } from "./session-client-error.js";
import { peekClaims, type SessionGrant } from "./session-grant.js";
import type { TokenRefresher } from "./token-refresher.js";

/**
 * Where the RPC refresher keeps the refresh token between runs. On mobile, back it
 * with the Keychain (iOS) or the Keystore-encrypted preferences (Android); on a
 * server, with a secret store. Only the refresh token is ever written here — the
 * access token stays in memory.
 *
 * @example
 * ```ts
 * const storage: RefreshTokenStorage = {
 *   get: () => Keychain.getGenericPassword({ service: "auth" }).then((c) => (c ? c.password : undefined)),
 *   set: (token) => Keychain.setGenericPassword("refresh", token, { service: "auth" }).then(() => {}),
 *   clear: () => Keychain.resetGenericPassword({ service: "auth" }).then(() => {}),
 * };
 * ```
 */
export interface RefreshTokenStorage {
  get(): Promise<string | undefined>;
  set(refreshToken: string): Promise<void>;
  clear(): Promise<void>;
}

/**
 * A RefreshTokenStorage in memory: for tests and short-lived processes (nothing survives a restart).
 *
 * @example
 * ```ts
 * const refresher = createRpcRefresher({ transport, storage: createMemoryRefreshTokenStorage() });
 * ```
 */
export function createMemoryRefreshTokenStorage(initial?: string): RefreshTokenStorage {
  let value = initial;
  return {
    get: async () => value,
    set: async (token) => {
      value = token;
    },
    clear: async () => {
      value = undefined;
    },
  };
}

/**
 * Options of {@link createRpcRefresher}.
 *
 * @example
 * ```ts
 * const options: RpcRefresherOptions = { transport: createConnectTransport({ baseUrl }), storage: keychainStorage };
 * ```
 */
export interface RpcRefresherOptions {
  /** A Connect transport to the authority (connect-web, or connect-node's for Connect/gRPC/gRPC-Web). */
  transport: Transport;
  storage: RefreshTokenStorage;
}

/**
 * A protobuf Timestamp (as protobuf-es gives it) or its JSON form, an RFC 3339 string.
 *
 * @example
 * ```ts
 * const a: TimestampLike = { seconds: 1767269700n, nanos: 0 };
 * const b: TimestampLike = "2026-01-01T12:15:00Z";
 * ```
 */
export type TimestampLike = { seconds: bigint; nanos: number } | string;

/**
 * What the RPC refresher's `signIn` accepts: the CreateSession (delivery DIRECT) or Refresh
 * response the app received from its login service, as a protobuf-es message or its
 * Connect JSON form.
 *
 * @example
 * ```ts
 * const input: RpcSignIn = await (await fetch("/login", { method: "POST", body })).json();
 * // { sessionId: "s_…", tokens: { accessToken: "eyJ…", accessTokenExpiresAt: "2026-01-01T12:15:00Z", refreshToken: "s_….…", refreshTokenExpiresAt: "…" }, sessionExpiresAt: "…" }
 * ```
 */
export interface RpcSignIn {
  sessionId: string;
  tokens?: {
    accessToken: string;
    accessTokenExpiresAt?: TimestampLike;
    refreshToken: string;
    refreshTokenExpiresAt?: TimestampLike;
  };
  sessionExpiresAt?: TimestampLike;
}

/**
 * App/Node mode: refreshes with the Refresh RPC, keeping the rotating refresh token in
 * a caller-supplied storage. `signIn` takes the CreateSession response (delivery DIRECT)
 * the app received from its login service.
 *
 * @example
 * ```ts
 * const transport = createConnectTransport({ baseUrl: "https://auth.example.com" });
 * const client = createSessionClient({ transport, refresher: createRpcRefresher({ transport, storage: keychainStorage }) });
 * await client.signIn(createSessionResponse); // or, on a later start: await client.resume()
 * ```
 */
export function createRpcRefresher(options: RpcRefresherOptions): TokenRefresher<RpcSignIn> {
  if (!options?.transport) throw new ClientOptionsError("transport", "is required by the RPC refresher");
  const { storage } = options;
  for (const method of ["get", "set", "clear"] as const) {
    if (typeof storage?.[method] !== "function") throw new ClientOptionsError("storage", `must implement RefreshTokenStorage (no ${method}())`);
  }
  const rpc = createClient(SessionAuthorityService, options.transport);

  async function adopt(answer: RpcSignIn): Promise<SessionGrant> {
    const grant = grantOf(answer);
    await storage.set(answer.tokens!.refreshToken);
    return grant;
  }

  return {
    sharedCredential: false,
    async refresh(signal) {
      const refreshToken = await storage.get();
      if (!refreshToken) throw new SessionClientError("unauthenticated", "no refresh token is stored");
      let answer: RefreshResponse;
      try {
        answer = await rpc.refresh({ refreshToken }, { signal });
      } catch (error) {
        throw fromConnectError(error, "refresh");
      }
      return adopt(answer);
    },
    async signIn(input) {
      return adopt(input);
    },
    async logout(scope, accessToken, signal) {
      try {
        if (!accessToken) return 0;
        const answer = await rpc.logout(
          { scope: scope === "all" ? LogoutScope.ALL : LogoutScope.CURRENT },
          { signal, headers: { authorization: `Bearer ${accessToken}` } },
        );
        return answer.sessionsEnded;
      } catch (error) {
        throw fromConnectError(error, "logout");
      } finally {
        await storage.clear();
      }
    },
    clear: () => storage.clear(),
  };
}

/** The grant in a CreateSession or Refresh response; `bad_response` if it carries no tokens. */
function grantOf(answer: RpcSignIn): SessionGrant {
  const tokens = answer?.tokens;
  const accessTokenExpiresAt = msOf(tokens?.accessTokenExpiresAt);
  const sessionExpiresAt = msOf(answer?.sessionExpiresAt);
  if (!answer?.sessionId || !tokens?.accessToken || !tokens.refreshToken || accessTokenExpiresAt === undefined || sessionExpiresAt === undefined) {
    throw new SessionClientError("bad_response", "the response carries no token pair (was the session created with delivery BROWSER_HANDOFF?)");
  }
  return {
    sessionId: answer.sessionId,
    userId: peekClaims(tokens.accessToken).sub ?? "",
    accessToken: tokens.accessToken,
    accessTokenExpiresAt,
    refreshExpiresAt: msOf(tokens.refreshTokenExpiresAt) ?? sessionExpiresAt,
    sessionExpiresAt,
  };
}

function msOf(t: TimestampLike | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = typeof t === "string" ? Date.parse(t) : Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1_000_000);
  return Number.isFinite(ms) ? ms : undefined;
}
