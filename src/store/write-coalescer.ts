import type { Cluster, Redis } from "ioredis";

/**
 * Returns a function to call before each command: the first call in a turn of
 * the event loop corks the connection's socket and the turn's end uncorks it,
 * so every command issued in between leaves in one write.
 *
 * ioredis's enableAutoPipelining batches the same way, through a Pipeline per
 * batch, and the Pipeline constructor defines an accessor with a fresh closure
 * on each instance. V8 gives every such instance a hidden class of its own,
 * allocated in the old generation and holding the instance, so each batch and
 * all its commands (arguments, replies, the callers waiting on them) survived
 * every young-generation GC until a full one: a quarter of the authority's
 * allocation was promoted, and the full GCs that followed made its p99. Corking
 * promotes nothing and costs less CPU than building the Pipelines did.
 *
 * A Cluster spreads commands over one connection per node; it keeps ioredis's
 * autopipelining, and this returns a function that does nothing.
 */
export function coalesceWrites(redis: Redis | Cluster): () => void {
  if (redis.isCluster) return () => {};
  const client = redis as Redis;
  let corked: Redis["stream"] | undefined;
  const uncork = () => {
    const stream = corked;
    corked = undefined;
    stream?.uncork();
  };
  return () => {
    if (corked || client.status !== "ready") return;
    corked = client.stream;
    corked.cork();
    // After the I/O callbacks of this turn, as ioredis's autopipelining waits, so
    // the commands of calls that arrived together go out together.
    setImmediate(uncork);
  };
}
