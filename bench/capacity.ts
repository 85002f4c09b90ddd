// npm run bench:capacity — what one session, refresh and revocation cost, the
// inputs of the README's Capacity section:
//   1. Redis memory per session and per revocation entry (INFO memory, 100k each)
//   2. Redis commands per operation through a real authority (INFO commandstats
//      deltas; revocations include the outbox relay publishing them to NATS)
//   3. NATS bytes per revocation event (stored in the stream, on the wire)
//   4. sidecar heap per live revocation entry (the verifier's RevocationSet)
// Not a test: it measures and prints Markdown; BENCHMARKS.md keeps the results.
import { randomBytes, randomUUID } from "node:crypto";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect } from "@nats-io/transport-node";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { startAuthority, type RunningAuthority } from "../src/authority/authority-server.js";
import { hashApiKey } from "../src/authority/caller-auth.js";
import { loadConfig } from "../src/config/config.js";
import { STREAMS } from "../src/events/subjects.js";
import { LogoutScope, RevocationReason, SessionAuthorityService } from "../src/gen/sessionauthority/v1/authority_pb.js";
import { silentLogger } from "../src/shared/logger.js";
import { createStore } from "../src/store/create-store.js";
import { newSessionId } from "../src/store/session-id.js";
import type { SessionStore } from "../src/store/session-store.js";
import { RevocationSet } from "../src/verifier/revocation-set.js";
import { startNats } from "../test/support/nats-server.js";
import { startRedis } from "../test/support/redis-server.js";
import { memoryPerSession, redisBytesPer, UA } from "./redis-memory.js";

const ENTRIES = Number(process.env.BENCH_CAPACITY_ENTRIES ?? 100_000);
const OPS = Number(process.env.BENCH_CAPACITY_OPS ?? 1000);
const IN_FLIGHT = 16;
/** Which parts to run: BENCH_PHASES=memory,commands,sidecar (default all). */
const PHASES = new Set((process.env.BENCH_PHASES ?? "memory,commands,sidecar").split(","));
/** Commands the store sends itself; every other command counted ran inside a Lua script. */
const CLIENT_COMMANDS = new Set(["evalsha", "eval", "sadd", "srem", "srandmember", "lrange", "hgetall", "hsetnx", "hset", "hdel", "scan", "ping", "script"]);
/** Commands this program sends to watch Redis; never counted. */
const PROBES = new Set(["info", "scard", "memory|usage"]);

type AuthorityClient = Client<typeof SessionAuthorityService>;

async function main() {
  console.log(`# bench:capacity  ${new Date().toISOString()}  node ${process.version}  entries=${ENTRIES} ops=${OPS}`);
  if (PHASES.has("memory")) await redisMemory();
  if (PHASES.has("commands")) await commandsAndEvents();
  if (PHASES.has("sidecar")) sidecarMemory();
}

/** 1. Redis bytes per entry of each kind the store keeps. */
async function redisMemory(): Promise<void> {
  const now = Date.now();
  const cover = now + 16 * 60_000; // an access token's life plus skew, as the authority sets it
  const rows: [string, number][] = [...(await memoryPerSession(ENTRIES)).map(([shape, bytes]) => [`session, ${shape}`, bytes] as [string, number])];
  rows.push(["revoked access token (jti entry)", await redisBytesPer(ENTRIES, (store, i) => {
    const userId = `user-${i}`;
    return store.revokeToken({ userId, sid: newSessionId(userId), jti: randomBytes(16).toString("base64url"), reason: 3, now, coverUntil: cover });
  })]);
  rows.push(["revoked session (sid entry; the session itself is deleted)", await redisBytesPer(ENTRIES, (store, i) =>
    store.endSessions({ userId: "", target: { kind: "one", sid: newSessionId(`user-${i}`) }, reason: 3, now, coverUntil: cover, requireOwnership: false }))]);
  rows.push(["revoked user (not-before entry)", await redisBytesPer(ENTRIES, (store, i) =>
    store.endSessions({ userId: `user-${i}`, target: { kind: "all" }, reason: 3, now, coverUntil: cover, requireOwnership: false }))]);
  console.log(`\n## Redis memory (${ENTRIES.toLocaleString("en")} of each, INFO used_memory delta)\n`);
  console.log("| entry | bytes each |\n| --- | --- |");
  for (const [what, bytes] of rows) console.log(`| ${what} | ${bytes} |`);
}

/** 2 and 3. Redis commands per call through two real authority replicas, and what the revocations cost on NATS. */
async function commandsAndEvents(): Promise<void> {
  const [redisServer, nats] = await Promise.all([startRedis(), startNats()]);
  const redis = new Redis(redisServer.url);
  const apiKey = `bench_${randomBytes(16).toString("base64url")}`;
  const env = {
    REDIS_URL: redisServer.url, NATS_URL: nats.url, SA_KEY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    SA_API_KEYS: JSON.stringify([{ name: "bench", sha256: hashApiKey(apiKey).toString("hex"), scopes: ["sessions:create", "sessions:revoke", "sessions:read"] }]),
    SA_GRPC_PORT: "0", SA_HTTP_PORT: "0", SA_LOG_LEVEL: "silent",
  };
  const replicas: { authority: RunningAuthority; store: SessionStore; client: AuthorityClient; h2: Http2SessionManager }[] = [];
  for (let i = 0; i < 2; i++) {
    const config = loadConfig(env);
    const store = await createStore(config, silentLogger);
    const authority = await startAuthority({ config, store, logger: silentLogger });
    const h2 = new Http2SessionManager(`http://127.0.0.1:${authority.grpcPort}`);
    replicas.push({ authority, store, h2, client: createClient(SessionAuthorityService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${authority.grpcPort}`, sessionManager: h2 })) });
  }
  const [a, b] = replicas as [typeof replicas[0], typeof replicas[0]];
  const admin = { headers: { authorization: `ApiKey ${apiKey}` } };
  const published = () => replicas.reduce((n, r) => n + (r.authority.relay?.published ?? 0), 0);
  const stats = async (): Promise<Map<string, number>> => {
    const text = await redis.info("commandstats");
    return new Map([...text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
  };
  const settle = async () => {
    // The relay acknowledges published events in Redis after JetStream acked them.
    for (let i = 0; i < 200 && (await redis.scard("sa:outbox")) > 0; i++) await sleep(25);
    await sleep(50);
  };
  try {
    // Background: each replica's relay polls the outbox and rereads the signing keys.
    await settle();
    const idle0 = await stats();
    const idleStart = Date.now();
    await sleep(3000);
    const idle = diff(await stats(), idle0);
    const idleMs = Date.now() - idleStart;

    const session = (n: number) => ({ userId: `user-${randomUUID()}`, username: `User ${n}`, roles: ["user"], permissions: ["orders:read"], userAgent: UA, device: { id: `device-${n}`, name: "Laptop" }, ipAddress: "203.0.113.7" });
    const createMany = (client: AuthorityClient) => pool(OPS, (i) => client.createSession(session(i), admin));

    const rows: string[] = [];
    const measure = async (what: string, run: () => Promise<unknown>, expectEvents = 0) => {
      await settle();
      const before = await stats();
      const eventsBefore = published();
      const started = Date.now();
      await run();
      if (expectEvents) for (let i = 0; i < 400 && published() - eventsBefore < expectEvents; i++) await sleep(25);
      await settle();
      const delta = diff(await stats(), before);
      const elapsed = Date.now() - started;
      const perOp = new Map<string, number>();
      for (const [cmd, calls] of delta) {
        if (PROBES.has(cmd)) continue;
        const background = ((idle.get(cmd) ?? 0) * elapsed) / idleMs;
        const n = (calls - background) / OPS;
        if (n >= 0.005) perOp.set(cmd, n);
      }
      const client = [...perOp].filter(([c]) => CLIENT_COMMANDS.has(c));
      const inside = [...perOp].filter(([c]) => !CLIENT_COMMANDS.has(c));
      const sum = (xs: [string, number][]) => xs.reduce((s, [, n]) => s + n, 0);
      const list = (xs: [string, number][]) => xs.sort((x, y) => y[1] - x[1]).map(([c, n]) => `${c} ${fmt(n)}`).join(", ");
      rows.push(`| ${what} | ${fmt(sum(client))} (${list(client)}) | ${fmt(sum(inside))} (${list(inside)}) |`);
      console.error(`  measured: ${what}`);
    };

    await measure("CreateSession", () => createMany(a.client));
    const created = await createMany(a.client);
    await measure("Refresh, on the replica that created the session", () => pool(OPS, (i) => a.client.refresh({ refreshToken: created[i]!.tokens!.refreshToken })));
    // Each refresh keeps the sealed successor pair for the grace window (SA_REFRESH_GRACE, 10 s).
    const graceKeys = (await redis.scan("0", "MATCH", "sa:{*}:g:*", "COUNT", 10_000))[1].slice(0, 200);
    const graceBytes = (await Promise.all(graceKeys.map((k) => redis.memory("USAGE", k)))).reduce((s: number, n) => s + Number(n ?? 0), 0) / graceKeys.length;
    const onB = await createMany(a.client);
    await measure("Refresh, on a replica that has not seen the session", () => pool(OPS, (i) => b.client.refresh({ refreshToken: onB[i]!.tokens!.refreshToken })));
    await measure("ValidateToken on the authority (sidecars do this in memory)", () => pool(OPS, (i) => a.client.validateToken({ accessToken: created[i]!.tokens!.accessToken })));
    const forToken = await createMany(a.client);
    await measure("Revoke one access token", () => pool(OPS, (i) => b.client.revoke({ target: { case: "accessToken", value: forToken[i]!.tokens!.accessToken }, reason: RevocationReason.SECURITY_RISK }, admin)), OPS);
    const forSession = await createMany(a.client);
    await measure("Revoke one session", () => pool(OPS, (i) => b.client.revoke({ target: { case: "sessionId", value: forSession[i]!.sessionId }, reason: RevocationReason.ADMIN_ACTION }, admin)), OPS);
    const forUser = await createMany(a.client);
    await measure("Revoke a user (one session)", () => pool(OPS, (i) => b.client.revoke({ target: { case: "userId", value: decodeSub(forUser[i]!.tokens!.accessToken) }, reason: RevocationReason.PASSWORD_CHANGED }, admin)), OPS);
    const forLogout = await createMany(a.client);
    await measure("Logout (current session)", () => pool(OPS, (i) => b.client.logout({ scope: LogoutScope.CURRENT }, { headers: { authorization: `Bearer ${forLogout[i]!.tokens!.accessToken}` } })), OPS);

    console.log(`\n## Redis commands per call (${OPS} calls each at ${IN_FLIGHT} in flight, two replicas; revocations until the relay has published and acknowledged them; background subtracted)\n`);
    console.log("| call | commands sent by the authority | commands run inside its Lua scripts |\n| --- | --- | --- |");
    console.log(rows.join("\n"));
    console.log(`\nA refresh keeps its sealed successor pair for the grace window: ${fmt(graceBytes)} bytes of Redis (MEMORY USAGE, mean of ${graceKeys.length} keys).`);
    console.log(`Background per replica, idle: ${[...idle].filter(([c]) => !PROBES.has(c)).map(([c, n]) => `${c} ${fmt((n * 1000) / idleMs / 2)}/s`).join(", ")}`);

    await natsCosts(nats.url);
  } finally {
    for (const r of replicas) {
      r.h2.abort();
      await r.authority.stop();
      await r.store.close();
    }
    redis.disconnect();
    await Promise.all([redisServer.stop(), nats.stop()]);
  }
}

/** 3. The revocation stream as the sidecars see it: stored bytes per message, and bytes on the wire to replay it. */
async function natsCosts(url: string): Promise<void> {
  const nc = await natsConnect({ servers: url });
  try {
    const info = await (await jetstreamManager(nc)).streams.info(STREAMS.revocations.name);
    const { messages, bytes } = info.state;
    const consumer = await jetstream(nc).consumers.get(STREAMS.revocations.name, { deliver_policy: DeliverPolicy.All });
    const bySubject = new Map<string, { n: number; payload: number; subject: number }>();
    // nats.js counts a message's header block and payload as inBytes; the
    // HMSG line in front of them (subject, sid, the $JS.ACK reply, sizes) is added here.
    const inBefore = nc.stats().inBytes;
    let controlLines = 0;
    const iter = await consumer.consume({ max_messages: 1024 });
    let seen = 0;
    for await (const m of iter) {
      const kind = m.subject.split(".").at(-1)!;
      const row = bySubject.get(kind) ?? { n: 0, payload: 0, subject: 0 };
      row.n++;
      row.payload += m.data.length;
      row.subject += m.subject.length;
      bySubject.set(kind, row);
      const { reply = "", sid = 1 } = m as typeof m & { reply?: string; sid?: number };
      controlLines += `HMSG ${m.subject} ${sid} ${reply} 000 0000\r\n`.length + 2;
      if (++seen >= messages) break;
    }
    const headersAndPayload = nc.stats().inBytes - inBefore;
    const payload = [...bySubject.values()].reduce((s, r) => s + r.payload, 0);
    console.log(`\n## NATS: the revocation stream after those revocations (${messages} messages)\n`);
    console.log("| event | messages | protobuf payload | subject |\n| --- | --- | --- | --- |");
    for (const [kind, r] of bySubject) console.log(`| ${kind} | ${r.n} | ${fmt(r.payload / r.n)} B | ${fmt(r.subject / r.n)} B |`);
    console.log(`\nHeader block (Nats-Msg-Id, for deduplication): ${fmt((headersAndPayload - payload) / seen)} bytes per message.`);
    console.log(`Stored in JetStream (file store, per replica): ${fmt(bytes / messages)} bytes per message.`);
    console.log(`Delivered to one sidecar, protocol line included: ${fmt((headersAndPayload + controlLines) / seen)} bytes per message on the wire.`);
  } finally {
    await nc.close();
  }
}

/**
 * 4. Heap per live revocation entry in a sidecar: the verifier's RevocationSet.
 * Each set stays alive while the next is measured, between two full GCs. Keys
 * are flat strings, as decoded from the events (randomUUID() would build a
 * concatenated string costing three times as much).
 */
function sidecarMemory(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc (npm run bench:capacity does)");
  const heap = () => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const flat = (text: string) => Buffer.from(text, "latin1").toString("latin1");
  const now = Date.now();
  const expiresAt = now + 16 * 60_000;
  const kept: RevocationSet[] = [];
  const rows: [string, string, number][] = [];
  let before = heap();
  for (const kind of ["token", "session", "user"] as const) {
    const set = new RevocationSet();
    for (let i = 0; i < ENTRIES; i++) {
      if (kind === "token") set.apply({ kind, jti: randomBytes(16).toString("base64url"), reason: 3, expiresAt: expiresAt + i }, now);
      else if (kind === "session") set.apply({ kind, sid: randomBytes(24).toString("base64url"), reason: 3, expiresAt: expiresAt + i }, now);
      else set.apply({ kind, userId: flat(randomUUID()), notBefore: Math.floor(now / 1000), reason: 3, expiresAt: expiresAt + i }, now);
    }
    const size = set.size();
    if (size.tokens + size.sessions + size.users !== ENTRIES) throw new Error("entries were lost");
    kept.push(set);
    const after = heap();
    rows.push([kind, { token: "jti, 22 characters", session: "sid, 32 characters", user: "user id, a 36-character UUID" }[kind], (after - before) / ENTRIES]);
    before = after;
  }
  console.log(`\n## Sidecar heap per live revocation entry (${ENTRIES.toLocaleString("en")} of each kind, after full GCs)\n`);
  console.log("| entry | key | bytes each |\n| --- | --- | --- |");
  for (const [kind, key, bytes] of rows) console.log(`| ${kind} | ${key} | ${fmt(bytes)} |`);
}

/** Runs task(0..n-1), IN_FLIGHT at a time; resolves with the results in order. */
async function pool<T>(n: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  }));
  return out;
}

function diff(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  return new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as [string, number]).filter(([, v]) => v > 0));
}

const decodeSub = (jwt: string): string => JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString("utf8")).sub as string;
const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString("en") : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
