import { createServer, type Server } from "node:http";
import * as grpc from "@grpc/grpc-js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { SidecarConfig } from "../config/config.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { SessionAuthorityService } from "../gen/sessionauthority/v1/authority_pb.js";
import type { Logger } from "../shared/logger.js";
import { connectService } from "../transport/connect-service.js";
import { grpcJsService } from "../transport/grpc-js-service.js";
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
 * (grpc-js) and Connect/JSON (HTTP/1.1), grpc.health.v1 whose status follows
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

  const grpcServer = new grpc.Server({ "grpc.max_receive_message_length": 64 * 1024 });
  for (const [service, h] of [[SessionAuthorityService, handlers], [Health, health.handlers()]] as const) {
    const { definition, implementation } = grpcJsService(service, h, logger);
    grpcServer.addService(definition, implementation);
  }
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(`${config.host}:${config.grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

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
    grpcPort,
    httpPort,
    health,
    async stop() {
      clearInterval(follow);
      await Promise.all([
        new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())),
        new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        }),
      ]);
    },
  };
}
