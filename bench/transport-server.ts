// The authority as the benchmark runs it: the normal servers (grpc-js gRPC and
// HTTP/1.1 Connect) plus, for the transport comparison only, the same handlers
// on connect-node over cleartext HTTP/2. Prints its ports as one JSON line.
import { createServer } from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { startAuthority } from "../src/authority/authority-server.js";
import { loadConfig } from "../src/config/config.js";
import { SessionAuthorityService } from "../src/gen/sessionauthority/v1/authority_pb.js";
import { createLogger } from "../src/shared/logger.js";
import { createStore } from "../src/store/create-store.js";
import { connectHandler } from "../src/transport/connect-service.js";
import { grpcJsService } from "../src/transport/grpc-js-service.js";

const config = loadConfig();
const logger = createLogger(config.logLevel);
const store = await createStore(config, logger);
const authority = await startAuthority({ config, store, logger });
const h2c = createServer(connectHandler([{ service: SessionAuthorityService, handlers: authority.handlers }], logger, 64 * 1024));
await new Promise<void>((resolve) => h2c.listen(0, "127.0.0.1", resolve));
const address = h2c.address();
// And on a @grpc/grpc-js server, the other gRPC server the authority can run (with TLS).
const grpcJs = new grpc.Server();
const { definition, implementation } = grpcJsService(SessionAuthorityService, authority.handlers, logger);
grpcJs.addService(definition, implementation);
const grpcJsPort = await new Promise<number>((resolve, reject) =>
  grpcJs.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
);
process.stdout.write(JSON.stringify({ grpc: authority.grpcPort, http: authority.httpPort, h2c: typeof address === "object" ? address?.port : 0, grpcJs: grpcJsPort }) + "\n");
process.on("SIGTERM", () => process.exit(0));
