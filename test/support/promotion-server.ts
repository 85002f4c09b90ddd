// A child process running a trivial unary gRPC server on node:http2 (with the
// StreamTable when started with "table"), so a test can see what this server
// alone promotes to the old generation: run it with --trace-gc-nvp and read the
// scavenges it prints between "mark" lines. Driven over IPC.
import { useStreamTable } from '../../src/transport/stream-table.js';
import { servingServer } from './serving-server.js';

const server = servingServer();
if (process.argv[2] === 'table') server.on('session', (session) => useStreamTable(session));
process.on('message', (m: 'mark' | 'close') => {
  if (m === 'close') return void server.close(() => process.exit(0));
  process.stdout.write('mark\n', () => process.send!('marked'));
});
server.listen(0, '127.0.0.1', () => process.send!((server.address() as { port: number }).port));
