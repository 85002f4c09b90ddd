import { createServer, type Server } from "node:http";
import { Histogram, Registry } from "prom-client";
import type { SidecarConfig } from "../config/config.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { SessionAuthorityService } from "../gen/sessionauthority/v1/authority_pb.js";
import { instrumentHandlers } from "../metrics/instrument-handlers.js";
import { serveMetrics } from "../metrics/serve-metrics.js";
import type { Logger } from "../shared/logger.js";
import { connectHandler } from "../transport/connect-service.js";
import { startH2GrpcServer } from "../transport/h2-grpc-server.js";
import { HealthStatus } from "../transport/health-service.js";
import { reflectionServices } from "../transport/reflection-service.js";
import { closeHttp, listen } from "../transport/listen.js";
import type { Verifier } from "../verifier/verifier.js";
import { registerVerifierMetrics } from "../verifier/verifier-metrics.js";
import { createSidecarHandlers } from "./sidecar-handlers.js";

const MAX_MESSAGE_BYTES = 64 * 1024;
/** Handler time of a sidecar ValidateToken: about a microsecond for a token seen before, tens for a new one. */
const RPC_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1];

export interface RunningSidecar {
  grpcPort: number;
  httpPort: number;
  health: HealthStatus;
  /** The sidecar's metrics (`session_verifier_*`), served at GET /metrics. */
  registry: Registry;
  stop(): Promise<void>;
}

/**
 * Serves a verifier beside one service, on loopback: ValidateToken over gRPC
 * (bare node:http2: about 1.5x grpc-js's calls per second on this hot path)
 * and Connect/JSON (HTTP/1.1), grpc.health.v1 whose status follows
 * the verifier's readiness (not ready, or a stale feed in fail-closed mode, is
 * NOT_SERVING), server reflection on the gRPC port, and GET /healthz, /readyz,
 * /status and /metrics.
 */
export async function startSidecar(config: SidecarConfig, verifier: Verifier, logger: Logger, registry = new Registry()): Promise<RunningSidecar> {
  const unregister = registerVerifierMetrics(verifier, registry);
  const rpcDuration = new Histogram({
    name: "session_verifier_rpc_duration_seconds", help: "Time in the sidecar's RPC handler, by method and gRPC status code.",
    labelNames: ["method", "code"], buckets: RPC_BUCKETS, registers: [registry],
  });
  const handlers = instrumentHandlers(SessionAuthorityService, createSidecarHandlers(verifier), rpcDuration);
  const health = new HealthStatus([SessionAuthorityService.typeName]);
  const serving = () => {
    const s = verifier.status();
    return s.ready && !(s.feed === "stale" && config.failMode === "closed");
  };
  const follow = setInterval(() => health.setAll(serving()), 250);
  follow.unref();
  health.setAll(serving());

  const services = [
    { service: SessionAuthorityService, handlers },
    { service: Health, handlers: health.handlers() },
  ];
  // Reflection (a bidirectional stream) on the gRPC port only: HTTP/1.1 cannot carry it.
  const grpcServices = [...services, ...reflectionServices(services.map((s) => s.service))];
  const grpcServer = await startH2GrpcServer({ host: config.host, port: config.grpcPort, services: grpcServices, logger, maxMessageBytes: MAX_MESSAGE_BYTES });
  const connect = connectHandler(services, logger, MAX_MESSAGE_BYTES);
  const httpServer: Server = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/healthz" || req.url === "/readyz" || req.url === "/status")) {
      const ok = req.url === "/healthz" || serving();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
      res.end(JSON.stringify({ ...verifier.status(), memory: { rss, heapUsed, heapTotal, external, arrayBuffers } }));
      return;
    }
    if (req.method === "GET" && req.url === "/metrics") return serveMetrics(res, registry);
    connect(req, res);
  });
  const httpPort = await listen(httpServer, config.host, config.httpPort);

  return {
    grpcPort: grpcServer.port,
    httpPort,
    health,
    registry,
    async stop() {
      clearInterval(follow);
      unregister();
      await Promise.all([grpcServer.close(), closeHttp(httpServer)]);
    },
  };
}
