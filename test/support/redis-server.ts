import { connect } from 'node:net';
import { makeTempDir, startServer, type ServerProcess } from './server-process.js';

export type RedisProcess = ServerProcess;

/** Resolves true if a raw `PING` on the port gets `+PONG` (not e.g. `-LOADING`). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('close', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

/**
 * Spawns a real redis-server on 127.0.0.1 with persistence off (override via
 * `args`, later flags win) and a fresh temp dir, resolved once it answers PING.
 */
export function startRedis(opts: { port?: number; dir?: string; args?: string[] } = {}): Promise<RedisProcess> {
  const dir = opts.dir ?? makeTempDir('redis-test-');
  return startServer(
    {
      bin: 'redis-server',
      args: (port, d) => [
        '--bind', '127.0.0.1', '--port', String(port), '--dir', d,
        '--save', '', '--appendonly', 'no', '--daemonize', 'no',
        ...(opts.args ?? []),
      ],
      url: (port) => `redis://127.0.0.1:${port}`,
      probe: ping,
    },
    dir,
    opts.port,
  );
}
