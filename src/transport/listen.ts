import type { Server } from "node:net";
import type { Server as HttpServer } from "node:http";

/** Listens and resolves with the bound port (the real one when asked for port 0). */
export function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

/** Stops an HTTP/1.1 server; keep-alive connections would otherwise hold close() open. */
export function closeHttp(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
