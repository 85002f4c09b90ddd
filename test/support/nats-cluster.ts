// A real three-node NATS cluster with JetStream on loopback: each nats-server
// has a server name, routes to the other two and its own store dir (kept across
// restart(), so a node killed with SIGKILL comes back with its JetStream data).
import { freePort } from './free-port.js';
import { startNats, type NatsProcess } from './nats-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface NatsNode extends NatsProcess {
  /** The server_name JetStream reports (e.g. as a stream's leader). */
  name: string;
  /** /healthz answers 200 once this node's JetStream is current. */
  healthy(): Promise<boolean>;
}

export interface NatsClusterProcess {
  nodes: NatsNode[];
  /** Every node's client URL, comma-separated: the value for NATS_URL. */
  url: string;
  node(name: string): NatsNode;
  /** Resolves once every node in `nodes` (default all) reports healthy JetStream. */
  waitHealthy(nodes?: NatsNode[], timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startNatsCluster(opts: { clusterName?: string } = {}): Promise<NatsClusterProcess> {
  const clusterName = opts.clusterName ?? 'sa-test';
  const names = ['n1', 'n2', 'n3'];
  // Route and monitor ports come from freePort() and can be taken by another
  // process before a node binds them (the node then exits); start the whole
  // cluster again on fresh ports in that case, as startServer does for one.
  let nodes: NatsNode[] | undefined;
  for (let attempt = 1; !nodes; attempt++) {
    const started = await startNodes(names, clusterName);
    if (started.every((r) => r.status === 'fulfilled')) {
      nodes = started.map((r) => (r as PromiseFulfilledResult<NatsNode>).value);
    } else {
      await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
      if (attempt >= 3) throw (started.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
    }
  }

  const cluster: NatsClusterProcess = {
    nodes,
    url: nodes.map((n) => n.url).join(','),
    node(name) {
      const found = nodes.find((n) => n.name === name);
      if (!found) throw new Error(`no NATS node named ${name}`);
      return found;
    },
    async waitHealthy(which = nodes, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(which.map((n) => n.healthy()));
        if (states.every(Boolean)) return;
        if (Date.now() > deadline) {
          throw new Error(`NATS nodes not healthy within ${timeoutMs} ms: ${which.filter((_, i) => !states[i]).map((n) => n.name).join(', ')}`);
        }
        await sleep(100);
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  try {
    await cluster.waitHealthy();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/** Starts one nats-server per name, clustered with each other on fresh route ports. */
async function startNodes(names: string[], clusterName: string): Promise<PromiseSettledResult<NatsNode>[]> {
  const routePorts = await Promise.all(names.map(() => freePort()));
  const monitorPorts = await Promise.all(names.map(() => freePort()));
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  return Promise.allSettled(names.map(async (name, i): Promise<NatsNode> => {
    const server = await startNats({
      args: [
        '--server_name', name, '--cluster_name', clusterName, '--cluster', `nats://127.0.0.1:${routePorts[i]}`, '--routes', routes,
        '-m', String(monitorPorts[i]),
      ],
    });
    return {
      ...server,
      name,
      async healthy() {
        try {
          const res = await fetch(`http://127.0.0.1:${monitorPorts[i]}/healthz`, { signal: AbortSignal.timeout(1000) });
          return res.ok;
        } catch {
          return false;
        }
      },
    };
  }));
}
