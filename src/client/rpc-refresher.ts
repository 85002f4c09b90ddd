import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import {
  LogoutScope,
  SessionAuthorityService,
  type CreateSessionResponse,
  type RefreshResponse,
} from "../gen/sessionauthority/v1/authority_pb.js";
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

/** What the RPC refresher's `signIn` accepts: the token pair the login service obtained for this app. */
export type RpcSignIn = Pick<CreateSessionResponse, "sessionId" | "tokens" | "sessionExpiresAt"> | RefreshResponse;

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
  if (!answer?.sessionId || !tokens?.accessToken || !tokens.refreshToken || !tokens.accessTokenExpiresAt || !answer.sessionExpiresAt) {
    throw new SessionClientError("bad_response", "the response carries no token pair (was the session created with delivery BROWSER_HANDOFF?)");
  }
  const sessionExpiresAt = timestampMs(answer.sessionExpiresAt);
  return {
    sessionId: answer.sessionId,
    userId: peekClaims(tokens.accessToken).sub ?? "",
    accessToken: tokens.accessToken,
    accessTokenExpiresAt: timestampMs(tokens.accessTokenExpiresAt),
    refreshExpiresAt: tokens.refreshTokenExpiresAt ? timestampMs(tokens.refreshTokenExpiresAt) : sessionExpiresAt,
    sessionExpiresAt,
  };
}
