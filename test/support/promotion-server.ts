// A child process running a trivial unary gRPC server on node:http2 (with the
// StreamTable when started with "table"), so a test can see what this server
// alone promotes to the old generation: run it with --trace-gc-nvp and read the
// scavenges it prints between "mark" lines. Driven over IPC.
import { createServer, type ServerHttp2Stream } from 'node:http2';
import { useStreamTable } from '../../src/transport/stream-table.js';

const server = createServer();
if (process.argv[2] === 'table') server.on('session', (session) => useStreamTable(session));
// HealthCheckResponse { status: SERVING } in one gRPC frame.
const frame = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);
server.on('stream', (stream: ServerHttp2Stream) => {
  stream.resume();
  stream.once('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(frame);
  });
});
process.on('message', (m: 'mark' | 'close') => {
  if (m === 'close') return void server.close(() => process.exit(0));
  process.stdout.write('mark\n', () => process.send!('marked'));
});
server.listen(0, '127.0.0.1', () => process.send!((server.address() as { port: number }).port));
