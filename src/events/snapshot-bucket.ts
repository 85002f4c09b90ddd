import { Objm, setSha256Backend, type ObjectStore } from "@nats-io/obj";
import { StorageType } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
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
