// Verifier sidecars for integration tests: in-process ones (createVerifier +
// NatsRevocationFeed + startSidecar, each with its own NATS connection) and
// real child processes (`node --import tsx src/cli/main.ts sidecar`), with
// clients for their gRPC and Connect/JSON ports, plus a JWKS proxy that counts
// and can hold the requests reaching the authority.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { loadSidecarConfig } from '../../src/config/config.js';
import { NatsRevocationFeed } from '../../src/events/nats-revocation-feed.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health_pb.js';
import { RevocationReason, SessionAuthorityService, TokenInvalidReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { silentLogger, type Logger } from '../../src/shared/logger.js';
import { startSidecar } from '../../src/sidecar/sidecar-server.js';
import { createVerifier, type RevocationEntry, type Verifier, type VerifierOptions, type VerifierStatus } from '../../src/verifier/index.js';
import { killOnExit } from './server-process.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface Sidecar {
  name: string;
  grpcPort: number;
  httpPort: number;
  /** gRPC (HTTP/2) against the gRPC port. */
  grpc: Client<typeof SessionAuthorityService>;
  /** Connect protocol with JSON over HTTP/1.1 against the HTTP port. */
  connect: Client<typeof SessionAuthorityService>;
  /** grpc.health.v1 over gRPC. */
  health: Client<typeof Health>;
  /** GET /status (or /readyz, /healthz): HTTP status and the verifier status. */
  http(path: '/status' | '/readyz' | '/healthz'): Promise<{ status: number; body: VerifierStatus }>;
  /** Present for in-process sidecars. */
  verifier?: Verifier;
  /** GET /metrics: the Prometheus text. */
  metrics(): Promise<string>;
  /** Present for child-process sidecars: everything it wrote. */
  output?: () => string;
  stop(): Promise<void>;
}

function clientsFor(grpcPort: number, httpPort: number) {
  const h2 = new Http2SessionManager(`http://127.0.0.1:${grpcPort}`);
  const grpcTransport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${grpcPort}`, sessionManager: h2 });
  const connectTransport = createConnectTransport({ baseUrl: `http://127.0.0.1:${httpPort}`, httpVersion: '1.1' });
  return {
    grpc: createClient(SessionAuthorityService, grpcTransport),
    connect: createClient(SessionAuthorityService, connectTransport),
    health: createClient(Health, grpcTransport),
    async http(path: string) {
      const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
      return { status: res.status, body: (await res.json()) as VerifierStatus };
    },
    async metrics() {
      return (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    },
    close: () => h2.abort(),
  };
}

export interface InProcessOptions {
  name: string;
  /** The authority's HTTP base URL (the JWKS is at <url>/.well-known/jwks.json). */
  authorityUrl: string;
  natsUrl: string;
  /** More SA_* keys for loadSidecarConfig (e.g. SA_SIDECAR_FAIL_MODE). */
  env?: Record<string, string>;
  /** Wraps the verifier's fetch, e.g. to count JWKS requests. */
  fetch?: typeof globalThis.fetch;
  /** Verifier options beyond what the sidecar configuration sets. */
  verifier?: Partial<VerifierOptions>;
  /** For the verifier, its feed and the sidecar's servers. Default: silent. */
  logger?: Logger;
}

/** A sidecar in this process, built the way `session-authority sidecar` builds one. */
export async function startInProcessSidecar(o: InProcessOptions): Promise<Sidecar> {
  const config = loadSidecarConfig({
    SA_AUTHORITY_URL: o.authorityUrl,
    NATS_URL: o.natsUrl,
    SA_SIDECAR_GRPC_PORT: '0',
    SA_SIDECAR_HTTP_PORT: '0',
    SA_LOG_LEVEL: 'silent',
    ...o.env,
  });
  const verifier = createVerifier({
    jwksUrl: `${config.authorityUrl}/.well-known/jwks.json`,
    issuer: config.issuer,
    audience: config.audience,
    feed: new NatsRevocationFeed({ servers: config.natsUrl.split(','), snapshots: config.snapshots, ...(o.logger ? { logger: o.logger } : {}) }),
    clockSkewMs: config.clockSkewMs,
    maxTokenBytes: config.maxTokenBytes,
    maxStalenessMs: config.maxStalenessMs,
    failMode: config.failMode,
    tokenCacheSize: config.tokenCacheSize,
    ...(o.fetch ? { fetch: o.fetch } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
    ...o.verifier,
  });
  const running = await startSidecar(config, verifier, o.logger ?? silentLogger);
  const c = clientsFor(running.grpcPort, running.httpPort);
  return {
    name: o.name, grpcPort: running.grpcPort, httpPort: running.httpPort, verifier, ...c,
    async stop() {
      c.close();
      await running.stop();
      await verifier.close();
    },
  };
}

/**
 * `node --import tsx src/cli/main.ts sidecar` as a child process; resolves once
 * it printed its ports (it serves at once, NOT_SERVING until ready).
 */
export async function spawnSidecar(name: string, env: Record<string, string>): Promise<Sidecar> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'sidecar'], {
    cwd: REPO,
    env: { ...process.env, SA_SIDECAR_GRPC_PORT: '0', SA_SIDECAR_HTTP_PORT: '0', SA_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killOnExit(child);
  let output = '';
  child.stdout!.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ports = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar ${name} printed no ports in time:\n${output}`)), 20_000);
    const look = () => {
      const grpcMatch = /gRPC\s+127\.0\.0\.1:(\d+)/.exec(output);
      const httpMatch = /HTTP\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (grpcMatch && httpMatch) {
        clearTimeout(timer);
        child.stdout!.off('data', look);
        resolve({ grpcPort: Number(grpcMatch[1]), httpPort: Number(httpMatch[1]) });
      }
    };
    child.stdout!.on('data', look);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`sidecar ${name} exited (${code ?? signal}):\n${output}`));
    });
  });
  const c = clientsFor(ports.grpcPort, ports.httpPort);
  return {
    name, ...ports, ...c,
    output: () => output,
    async stop() {
      c.close();
      if (child.exitCode === null && child.signalCode === null) {
        const escalate = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.kill('SIGTERM');
        await exited;
        clearTimeout(escalate);
      }
    },
  };
}

export interface JwksProxy {
  /** Base URL to use as SA_AUTHORITY_URL. */
  url: string;
  /** Requests for /.well-known/jwks.json that reached the proxy. */
  jwksRequests: number;
  /** When the last of them arrived (ms since the epoch; 0: none yet). */
  lastJwksAt: number;
  /** Holds every request until open() is called. */
  hold(): void;
  open(): void;
  close(): Promise<void>;
}

/** A tiny HTTP proxy in front of the authority's HTTP port: counts JWKS requests, and can hold them. */
export async function startJwksProxy(target: string): Promise<JwksProxy> {
  const state = { jwksRequests: 0, lastJwksAt: 0 };
  let gate: Promise<void> = Promise.resolve();
  let release: () => void = () => {};
  const server: Server = createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      state.jwksRequests++;
      state.lastJwksAt = Date.now();
    }
    void gate
      .then(() => fetch(`${target}${req.url}`, { method: req.method }))
      .then(async (upstream) => {
        const body = Buffer.from(await upstream.arrayBuffer());
        res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' });
        res.end(body);
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    get jwksRequests() {
      return state.jwksRequests;
    },
    get lastJwksAt() {
      return state.lastJwksAt;
    },
    hold() {
      gate = new Promise((resolve) => (release = resolve));
    },
    open() {
      release();
    },
    async close() {
      release();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** What a sidecar answers for a token, in one word: VALID, a TokenInvalidReason name, or the gRPC code of an error. */
export type Verdict = { verdict: string; revocationReason?: string; message?: string };

export async function verdictOf(client: Client<typeof SessionAuthorityService>, token: string, timeoutMs = 5000): Promise<Verdict> {
  try {
    const res = await client.validateToken({ accessToken: token }, { timeoutMs });
    if (res.valid) return { verdict: 'VALID' };
    return {
      verdict: TokenInvalidReason[res.reason]!,
      message: res.message,
      ...(res.reason === TokenInvalidReason.REVOKED ? { revocationReason: RevocationReason[res.revocationReason] } : {}),
    };
  } catch (e) {
    return { verdict: `error:${Code[ConnectError.from(e).code]}`, message: ConnectError.from(e).rawMessage };
  }
}

export async function servingStatus(s: Sidecar, service = ''): Promise<string> {
  try {
    const res = await s.health.check({ service }, { timeoutMs: 2000 });
    return HealthCheckResponse_ServingStatus[res.status]!;
  } catch (e) {
    return `error:${Code[ConnectError.from(e).code]}`;
  }
}

/**
 * A NatsRevocationFeed that collects everything it delivers, started (so
 * replayed to the end of the stream) when returned; `opened` receives it for
 * closing after the tests.
 */
export async function collectingFeed(natsUrl: string, opened: NatsRevocationFeed[]): Promise<{ entries: RevocationEntry[]; feed: NatsRevocationFeed }> {
  const entries: RevocationEntry[] = [];
  const feed = new NatsRevocationFeed({ servers: natsUrl });
  opened.push(feed);
  await feed.start({ apply: (e) => entries.push(e), keysChanged: () => {} });
  return { entries, feed };
}

/** Polls until check() is true; returns the time it took. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what = 'condition', intervalMs = 10): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
