import { createServer, type Server } from "node:http";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { SidecarConfig } from "../config/config.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { SessionAuthorityService } from "../gen/sessionauthority/v1/authority_pb.js";
import type { Logger } from "../shared/logger.js";
import { connectService } from "../transport/connect-service.js";
import { startH2GrpcServer } from "../transport/h2-grpc-server.js";
import { HealthStatus } from "../transport/health-service.js";
import type { Verifier } from "../verifier/verifier.js";
import { createSidecarHandlers } from "./sidecar-handlers.js";

export interface RunningSidecar {
  grpcPort: number;
  httpPort: number;
  health: HealthStatus;
  stop(): Promise<void>;
}

/**
 * Serves a verifier beside one service, on loopback: ValidateToken over gRPC
 * (bare node:http2: about 1.5x grpc-js's calls per second on this hot path)
 * and Connect/JSON (HTTP/1.1), grpc.health.v1 whose status follows
 * the verifier's readiness (not ready, or a stale feed in fail-closed mode, is
 * NOT_SERVING), and GET /healthz, /readyz and /status.
 */
export async function startSidecar(config: SidecarConfig, verifier: Verifier, logger: Logger): Promise<RunningSidecar> {
  const handlers = createSidecarHandlers(verifier);
  const health = new HealthStatus([SessionAuthorityService.typeName]);
  const serving = () => {
    const s = verifier.status();
    return s.ready && !(s.feed === "stale" && config.failMode === "closed");
  };
  const follow = setInterval(() => health.setAll(serving()), 250);
  follow.unref();
  health.setAll(serving());

  const grpcServer = await startH2GrpcServer({
    host: config.host,
    port: config.grpcPort,
    services: [
      { service: SessionAuthorityService, handlers },
      { service: Health, handlers: health.handlers() },
    ],
    logger,
    maxMessageBytes: 64 * 1024,
  });

  const connect = connectNodeAdapter({
    routes: (router) => {
      connectService(router, SessionAuthorityService, handlers, logger);
      connectService(router, Health, health.handlers(), logger);
    },
    readMaxBytes: 64 * 1024,
    jsonOptions: { ignoreUnknownFields: false },
  });
  const httpServer: Server = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/healthz" || req.url === "/readyz" || req.url === "/status")) {
      const ok = req.url === "/healthz" || serving();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
      res.end(JSON.stringify({ ...verifier.status(), memory: { rss, heapUsed, heapTotal, external, arrayBuffers } }));
      return;
    }
    connect(req, res);
  });
  const httpPort = await new Promise<number>((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(config.httpPort, config.host, () => {
      const a = httpServer.address();
      resolve(typeof a === "object" && a ? a.port : config.httpPort);
    });
  });

  return {
    grpcPort: grpcServer.port,
    httpPort,
    health,
    async stop() {
      clearInterval(follow);
      await Promise.all([
        grpcServer.close(),
        new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        }),
      ]);
    },
  };
}
