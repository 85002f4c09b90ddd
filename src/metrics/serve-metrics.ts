import type { ServerResponse } from "node:http";
import type { Registry } from "prom-client";

/** Answers GET /metrics with the registry in the Prometheus text format. */
export function serveMetrics(res: ServerResponse, registry: Registry): void {
  registry.metrics().then(
    (text) => {
      res.writeHead(200, { "content-type": registry.contentType, "cache-control": "no-store" });
      res.end(text);
    },
    () => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end("metrics unavailable\n");
    },
  );
}
