// A real Redis Cluster for tests: three redis-server masters (no replicas) on
// loopback, joined with `redis-cli --cluster create`, resolved once every node
// reports `cluster_state:ok` and the same three masters.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort } from './free-port.js';
import { startRedis, type RedisProcess } from './redis-server.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RedisClusterProcess {
  /** The masters, in the order they were started. */
  nodes: RedisProcess[];
  /** The value for REDIS_CLUSTER_NODES: every master's URL, comma-separated. */
  nodesEnv: string;
  /** An ioredis Cluster client with default (queueing) options, for test setup and inspection. */
  admin(): Cluster;
  /** The master that serves `key`'s slot. */
  nodeFor(key: string): Promise<RedisProcess>;
  /** Resolves once every running master says cluster_state:ok and knows all three masters. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** FLUSHALL on every master. */
  flushAll(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /**
   * cluster-node-timeout: how long a silent master takes to be marked failed
   * (default 15 s, as Redis). Longer than any test keeps a master down, so the
   * others never declare the cluster down and a restarted master serves again
   * after Redis's own 2 s rejoin delay.
   */
  nodeTimeoutMs?: number;
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterProcess> {
  const nodeTimeout = options.nodeTimeoutMs ?? 15_000;
  // The bus port is set explicitly: the default (port + 10000) can be taken,
  // or above 65535 for the high ports freePort() hands out.
  const nodes = await Promise.all([0, 1, 2].map(async () => {
    const busPort = await freePort();
    return startRedis({
      args: [
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort),
        '--cluster-node-timeout', String(nodeTimeout),
      ],
    });
  }));
  const clients = new Map<RedisProcess, Redis>();
  const clientOf = (node: RedisProcess) => {
    let c = clients.get(node);
    if (!c) {
      c = new Redis(node.port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      c.on('error', () => {});
      clients.set(node, c);
    }
    return c;
  };
  const admins: Cluster[] = [];

  const cluster: RedisClusterProcess = {
    nodes,
    nodesEnv: nodes.map((n) => n.url).join(','),
    admin() {
      const c = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
      c.on('error', () => {});
      admins.push(c);
      return c;
    },
    async nodeFor(key: string) {
      let failure: unknown;
      for (const asked of nodes) {
        try {
          const slot = (await clientOf(asked).cluster('KEYSLOT', key)) as number;
          const ranges = await clientOf(asked).cluster('SLOTS');
          const owner = ranges.find(([from, to]) => slot >= from && slot <= to);
          const node = nodes.find((n) => n.port === owner?.[2]?.[1]);
          if (!node) throw new Error(`no master serves slot ${slot}`);
          return node;
        } catch (e) {
          failure = e; // that node may be down: ask the next
        }
      }
      throw failure;
    },
    async waitHealthy(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      for (;;) {
        try {
          const infos = await Promise.all(nodes.map(async (n) => {
            const info = (await clientOf(n).cluster('INFO')) as string;
            return /cluster_state:ok/.test(info) && /cluster_known_nodes:3\b/.test(info) && /cluster_slots_ok:16384\b/.test(info);
          }));
          if (infos.every(Boolean)) return;
          last = 'cluster_state not ok on every node';
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() > deadline) throw new Error(`Redis Cluster not healthy within ${timeoutMs} ms: ${last}`);
        await sleep(50);
      }
    },
    async flushAll() {
      await Promise.all(nodes.map((n) => clientOf(n).flushall()));
    },
    async stop() {
      for (const a of admins) a.disconnect();
      for (const c of clients.values()) c.disconnect();
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };

  try {
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    await cluster.waitHealthy();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
