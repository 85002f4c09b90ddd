import { createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';

// HealthCheckResponse { status: SERVING } in one gRPC frame.
const FRAME = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);

/** A node:http2 server answering every unary gRPC call SERVING, and nothing else: the transport alone. */
export function servingServer(): Http2Server {
  const server = createServer();
  server.on('stream', (stream: ServerHttp2Stream) => {
    stream.resume();
    stream.once('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(FRAME);
    });
  });
  return server;
}
