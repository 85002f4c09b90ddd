// A sample service protected by its verifier sidecar: GET /hello answers only a
// request whose Bearer access token the sidecar (on loopback, in the same pod
// or network namespace) calls valid. No dependencies: the sidecar speaks
// Connect JSON over plain HTTP, so fetch() is all it takes.
//
//   SAMPLE_PORT  where this service listens (default 3000)
//   SIDECAR_URL  the sidecar's HTTP port (default http://127.0.0.1:8081)
import { createServer } from "node:http";

const port = Number(process.env.SAMPLE_PORT ?? 3000);
const sidecarUrl = (process.env.SIDECAR_URL ?? "http://127.0.0.1:8081").replace(/\/+$/, "");
const VALIDATE = `${sidecarUrl}/sessionauthority.v1.SessionAuthorityService/ValidateToken`;

/** Asks the sidecar; resolves with its verdict, or undefined when it cannot vouch for any token (fail closed). */
async function validate(accessToken) {
  try {
    const res = await fetch(VALIDATE, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ accessToken }),
      signal: AbortSignal.timeout(2000),
    });
    // Not 200: the sidecar is not ready, its revocation feed is stale, or it is overloaded.
    return res.ok ? await res.json() : undefined;
  } catch {
    return undefined;
  }
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(JSON.stringify(body));
}

const server = createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  if (req.method === "GET" && path === "/healthz") return send(res, 200, { ok: true });
  if (req.method !== "GET" || path !== "/hello") return send(res, 404, { error: "not found" });

  const token = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? "")?.[1];
  if (!token) return send(res, 401, { error: "missing bearer token" }, { "www-authenticate": "Bearer" });
  const verdict = await validate(token);
  if (!verdict) return send(res, 503, { error: "cannot check tokens right now" }, { "retry-after": "1" });
  if (!verdict.valid) {
    const reason = String(verdict.reason ?? "TOKEN_INVALID_REASON_UNSPECIFIED").replace(/^TOKEN_INVALID_REASON_/, "").toLowerCase();
    return send(res, 401, { error: "invalid token", reason }, { "www-authenticate": 'Bearer error="invalid_token"' });
  }
  const { userId, username = "", sessionId } = verdict.principal;
  send(res, 200, { message: `Hello, ${username || userId}!`, userId, sessionId });
});

server.listen(port, () => process.stdout.write(`sample service on :${server.address().port}, sidecar ${sidecarUrl}\n`));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, () => server.close(() => process.exit(0)));
}
