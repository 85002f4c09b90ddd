import { jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { snapshotBucket } from "./snapshot-bucket.js";
import { STREAMS } from "./subjects.js";

const nanos = (ms: number) => ms * 1_000_000;

/**
 * Creates or updates the authority's streams. The revocation stream's max age
 * is the longest an access token can live plus skew: a message older than that
 * can no longer matter, so the stream is exactly the live revocation set.
 * Also creates the object store bucket that holds the set's snapshot.
 */
export async function ensureStreams(nc: NatsConnection, revocationMaxAgeMs: number, replicas = 1): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const configs: (Partial<StreamConfig> & { name: string })[] = [
    {
      name: STREAMS.revocations.name,
      subjects: [...STREAMS.revocations.subjects],
      max_age: nanos(revocationMaxAgeMs),
      duplicate_window: nanos(Math.min(120_000, revocationMaxAgeMs)),
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: replicas,
    },
    {
      name: STREAMS.security.name,
      subjects: [...STREAMS.security.subjects],
      max_age: nanos(STREAMS.security.maxAgeMs),
      duplicate_window: nanos(120_000),
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: replicas,
    },
  ];
  for (const config of configs) {
    try {
      await jsm.streams.info(config.name);
      await jsm.streams.update(config.name, config);
    } catch (e) {
      if (!/stream not found/i.test((e as Error).message)) throw e;
      await jsm.streams.add(config);
    }
  }
  await snapshotBucket(nc, { replicas });
}
