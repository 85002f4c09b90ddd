import { connect } from 'node:net';
import { makeTempDir, startServer, type ServerProcess } from './server-process.js';

export type NatsProcess = ServerProcess;

/** Connects and reads the first protocol line; returns it if it is `INFO {...}`, else null. */
export function readNatsInfo(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (line: string | null) => { sock.destroy(); resolve(line); };
    sock.setTimeout(1000, () => done(null));
    sock.once('error', () => done(null));
    sock.once('close', () => done(null));
    sock.on('data', (d) => {
      buf += d.toString();
      const eol = buf.indexOf('\r\n');
      if (eol >= 0) done(buf.startsWith('INFO ') ? buf.slice(0, eol) : null);
    });
  });
}

/**
 * Spawns a real nats-server with JetStream on 127.0.0.1. The store dir is kept
 * across restart() so JetStream data survives.
 */
export function startNats(opts: { port?: number; dir?: string; args?: string[] } = {}): Promise<NatsProcess> {
  const dir = opts.dir ?? makeTempDir('nats-test-');
  return startServer(
    {
      bin: 'nats-server',
      args: (port, d) => ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', d, ...(opts.args ?? [])],
      url: (port) => `nats://127.0.0.1:${port}`,
      probe: async (port) => (await readNatsInfo(port)) !== null,
    },
    dir,
    opts.port,
  );
}
