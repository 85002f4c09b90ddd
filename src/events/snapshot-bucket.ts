import { Objm, setSha256Backend, type ObjectStore, type ObjectStoreMeta } from "@nats-io/obj";
import { StorageType } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { SnapshotPosition } from "./revocation-snapshot.js";
import { SNAPSHOTS } from "./subjects.js";

// The object store checks every object's SHA-256; its default pure-JS hash
// was a tenth of a cold start's CPU with a 5 MB snapshot. Node has a native one.
setSha256Backend("native");

/** The object store bucket holding the revocation snapshot; `replicas` creates it (the authority), otherwise it must exist. */
export function snapshotBucket(nc: NatsConnection, create?: { replicas: number }): Promise<ObjectStore> {
  const objm = new Objm(nc);
  if (!create) return objm.open(SNAPSHOTS.bucket);
  return objm.create(SNAPSHOTS.bucket, { description: "Compacted live revocation set (RevocationSnapshot)", storage: StorageType.File, replicas: create.replicas });
}

/** Object metadata keys: a snapshot's position is readable without fetching the object. */
const META_SEQUENCE = "stream-sequence";
const META_CREATED = "stream-created";
const META_WRITTEN = "written-at";

/** The object store entry for a snapshot at `at`, stored at `writtenAt` (ms). */
export function snapshotObject(at: SnapshotPosition, writtenAt: number): ObjectStoreMeta {
  return {
    name: SNAPSHOTS.object,
    metadata: { [META_SEQUENCE]: String(at.streamSequence), [META_CREATED]: String(at.streamCreated), [META_WRITTEN]: String(writtenAt) },
  };
}

/** The stored snapshot's position and when it was stored, from its metadata; undefined when none is stored or it carries none. */
export async function storedSnapshot(bucket: ObjectStore): Promise<{ at: SnapshotPosition; writtenAt: number } | undefined> {
  const meta = (await bucket.info(SNAPSHOTS.object))?.metadata;
  if (!meta) return undefined;
  return {
    at: { streamSequence: Number(meta[META_SEQUENCE] ?? 0), streamCreated: Number(meta[META_CREATED] ?? 0) },
    writtenAt: Number(meta[META_WRITTEN] ?? 0),
  };
}
