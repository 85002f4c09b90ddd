// Over real HTTP on loopback: the /auth/v1 endpoints and the Connect RPCs on a node:http
// server, the client with its default transport (connect-web over fetch, as in a browser)
// and a cookie jar in front of fetch playing the browser. Plus: the entry bundles for a
// browser page, and options are checked when the client is built.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  ClientOptionsError,
  createInProcessLock,
  createMemoryRefreshTokenStorage,
  createRpcRefresher,
  createSessionClient,
  type SessionClient,
} from "../../../src/client/index.js";
import { RevocationReason } from "../../../src/gen/sessionauthority/v1/authority_pb.js";
import { systemClock } from "../../../src/shared/clock.js";
import { record } from "./support/clients.js";
import { CookieJarFetch } from "./support/cookie-jar-fetch.js";
import { FakeAuthority } from "./support/fake-authority.js";
import { until } from "./support/fake-time.js";

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

describe("client over real HTTP with its default transport", () => {
  let server: Server;
  let baseUrl: string;
  const auth = new FakeAuthority(systemClock);

  beforeAll(async () => {
    const rpc = connectNodeAdapter({ routes: auth.routes });
    server = createServer((req, res) => {
      if (!req.url?.startsWith("/auth/v1/")) return rpc(req, res);
      void (async () => {
        const body = await bodyOf(req);
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
        const answer = await auth.handleAuth(new Request(`http://${req.headers.host}${req.url}`, { method: req.method, headers, body: body || undefined }));
        res.writeHead(answer.status, { "content-type": "application/json", "set-cookie": answer.headers.getSetCookie() });
        res.end(await answer.text());
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("signs in, refreshes with the cookie, lists devices, and hears a revocation within 1 s", async () => {
    const browser = new CookieJarFetch((request) => fetch(request));
    const client = createSessionClient({ baseUrl, fetch: browser.fetch, channelName: false, lock: createInProcessLock() });
    const log = record(client);
    try {
      const { sessionId, handoffCode } = auth.createHandoff("dora");
      await client.signIn(handoffCode);
      expect(browser.value).toBe(auth.sessions.get(sessionId)!.current.refreshToken);
      await client.refresh();
      expect(auth.calls.refresh).toBe(1);
      expect(await client.getAccessToken()).toBe(auth.sessions.get(sessionId)!.current.accessToken);

      const devices = await client.listDevices();
      expect(devices.map((d) => [d.sessionId, d.current])).toEqual([[sessionId, true]]);

      await until(() => auth.openWatchers().length === 1, "the WatchSession stream over HTTP");
      const revokedAt = Date.now();
      auth.end(sessionId, RevocationReason.ACCOUNT_LOCKED, "You were signed out because your account is locked.");
      await until(() => log.of("logged-out").length === 1, "logged-out", 1000);
      expect(Date.now() - revokedAt).toBeLessThan(1000);
      expect(log.of("logged-out")[0]).toEqual({
        reason: "revoked",
        revocationReason: "account_locked",
        message: "You were signed out because your account is locked.",
        sessionId,
        allSessions: false,
      });
    } finally {
      client.close();
    }
  });

  it("app mode against the same server: Refresh RPC over connect-web, rotated token stored", async () => {
    const { createConnectTransport } = await import("@connectrpc/connect-web");
    const transport = createConnectTransport({ baseUrl });
    const storage = createMemoryRefreshTokenStorage();
    const client: SessionClient<unknown> = createSessionClient({
      transport,
      refresher: createRpcRefresher({ transport, storage }),
      channelName: false,
      watchSession: false,
    });
    try {
      const created = auth.createDirect("erin");
      await storage.set(created.tokens.refreshToken);
      expect(await client.resume()).toMatchObject({ sessionId: created.sessionId, userId: "erin" });
      expect(await storage.get()).toBe(auth.sessions.get(created.sessionId)!.current.refreshToken);
      await client.logout();
      expect(auth.sessions.get(created.sessionId)!.ended).toBeDefined();
      expect(await storage.get()).toBeUndefined();
    } finally {
      client.close();
    }
  });
});

describe("client: packaging", () => {
  it("bundles for a browser page with esbuild: pure ESM, no Node built-ins, nothing browser-only run at import", async () => {
    const result = await build({
      entryPoints: ["src/client/index.ts"],
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile!.inputs);
    expect(inputs.filter((i) => i.startsWith("node:") || /connect-node|pino|ioredis|nats/.test(i))).toEqual([]);
    expect(inputs).toContain("src/client/session-client.ts");
    expect(result.outputFiles![0]!.text).not.toMatch(/\brequire\(/);
  });

  it("uses Web Locks when the platform has them", async () => {
    const requests: string[] = [];
    const request = async (name: string, _options: unknown, callback: (lock: unknown) => unknown) => {
      requests.push(name);
      return callback({ name });
    };
    vi.stubGlobal("navigator", { locks: { request } });
    try {
      const client = createSessionClient({ baseUrl: "https://auth.example.test", fetch: async () => new Response("{}", { status: 401 }), channelName: "x-locks", watchSession: false });
      await client.resume();
      client.close();
      expect(requests).toEqual(["x-locks:refresh"]);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe("client: options are checked when it is built", () => {
  const ok = { baseUrl: "https://auth.example.test" };
  it.each([
    [{}, "baseUrl", "is required unless both refresher and transport are given"],
    [{ baseUrl: "auth.example.test" }, "baseUrl", "is not an absolute URL"],
    [{ baseUrl: "ftp://auth.example.test" }, "baseUrl", "must be an http: or https: URL"],
    [{ baseUrl: "https://auth.example.test/?x=1" }, "baseUrl", "must not have a query or fragment"],
    [{ ...ok, refreshMarginMs: -1 }, "refreshMarginMs", "must be an integer of at least 0"],
    [{ ...ok, lockTimeoutMs: 0 }, "lockTimeoutMs", "must be an integer of at least 1"],
    [{ ...ok, heartbeatTimeoutMs: 1.5 }, "heartbeatTimeoutMs", "must be an integer"],
    [{ ...ok, refresher: { refresh: () => {} } }, "refresher", "must implement TokenRefresher (no logout())"],
    [{ ...ok, transport: {} }, "transport", "must be a Connect Transport"],
    [{ ...ok, channelName: "" }, "channelName", "must be a non-empty string or false"],
    [{ ...ok, lock: {} }, "lock", "must have an acquire() method"],
    [{ ...ok, timers: { setTimeout: () => 0 } }, "timers", "must have setTimeout() and clearTimeout() methods"],
    [{ ...ok, fetch: "fetch" }, "fetch", "must be a function"],
    [{ ...ok, watchSession: "yes" }, "watchSession", "must be a boolean"],
  ])("%j → %s", (options, option, problem) => {
    let error: unknown;
    try {
      createSessionClient(options as never);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ClientOptionsError);
    expect((error as ClientOptionsError).option).toBe(option);
    expect((error as Error).message).toContain(problem);
  });

  it("the RPC refresher checks its storage adapter", () => {
    expect(() => createRpcRefresher({ transport: {} as never, storage: { get: async () => undefined } as never })).toThrow(
      /storage must implement RefreshTokenStorage \(no set\(\)\)/,
    );
  });
});
