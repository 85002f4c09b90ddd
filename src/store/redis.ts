import { readFileSync } from "node:fs";
import type { Cluster, Redis } from "ioredis";
import { AuthorityError } from "../shared/errors.js";
import { decodeSessionStatic, encodeSessionStatic } from "./session-codec.js";
import { belongsTo, localPartOfSessionId, tagOfSessionId, userTag } from "./session-id.js";
import { secureRandomBytes } from "../shared/random.js";
import { coalesceWrites } from "./write-coalescer.js";
import type {
  CheckInput, CheckResult, EndSessionsInput, HandoffInput, EndSessionsResult, LoginNovelty, LoginSighting, OutboxBatch, OutboxEvent,
  ReuseInput, ReuseResult, RotateInput, RotateResult, SessionSnapshot, SessionStore, StoredSession, StoredSigningKey,
} from "./session-store.js";

const SCRIPTS = {
  saCreate: { keys: 3, file: "create.lua" },
  saGet: { keys: 3, file: "get.lua" },
  saRotate: { keys: 5, file: "rotate.lua" },
  saReuse: { keys: 5, file: "reuse.lua" },
  saEndSessions: { keys: 3, file: "end-sessions.lua" },
  saRevokeToken: { keys: 2, file: "revoke-token.lua" },
  saOutboxAck: { keys: 1, file: "outbox-ack.lua" },
  saAddFirstKey: { keys: 1, file: "add-first-key.lua" },
  saCheck: { keys: 5, file: "check.lua" },
  saList: { keys: 1, file: "list.lua" },
  saRecordLogin: { keys: 2, file: "record-login.lua" },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Client = (Redis | Cluster) & Record<ScriptName | `${ScriptName}Buffer`, (...args: unknown[]) => Promise<any>>;

/** Redis replies that mean "not now", not "your request is wrong". */
const TRANSIENT_REPLY = /^(LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|BUSY|MOVED|ASK|OOM)/;

/**
 * The production store. Works on a single Redis and on Redis Cluster: every key
 * of a user carries the user's hash tag, so each script touches one slot.
 *
 * Key layout under `<prefix>:{<tag>}:` where tag = userTag(userId) and m is the
 * random part of a session id (the tag is already in the prefix):
 *   s:<m>     session (MessagePack, see lua/prelude.lua), expires with the session
 *   g:<m>     "<until ms>:" + sealed successor pair, for the refresh grace window
 *   r:<m>     session revocation (reason), for as long as its access tokens live
 *   j:<jti>   access-token revocation (reason), until the token expires
 *   i         sorted set of the user's sessions (m) scored by expiry
 *   n         the user's not-before ("<seconds>:<reason>")
 *   o         the user's outbox: JSON events awaiting publication
 *   h:<hash>  "<until ms>:" + a sealed browser handoff, named by its code's hash
 *   d         recent logins' device ids ("d:<id>") and IP addresses ("i:<ip>"), scored by when last seen
 * and, each in a slot of its own, `<prefix>:keys` (signing keys by kid),
 * `<prefix>:outbox` (tags whose outbox may be non-empty; a periodic SCAN for
 * outboxes repairs it if a process died between a script and its SADD) and
 * `<prefix>:stats:sessions` / `<prefix>:stats:counting` (the shared count of
 * live sessions and the lock of the replica recounting it).
 */
export interface RedisStoreOptions {
  /** Key prefix (default "sa"). */
  prefix?: string;
  /** Record revocations in the outbox for publishing (default false: nothing would drain it). */
  outbox?: boolean;
}

export class RedisSessionStore implements SessionStore {
  private readonly redis: Client;
  private readonly prefix: string;
  private readonly emit: "1" | "0";
  private readonly watchers = new Set<(batch: OutboxBatch) => void>();
  private readonly coalesce: () => void;

  constructor(redis: Redis | Cluster, options: RedisStoreOptions | string = {}) {
    const o = typeof options === "string" ? { prefix: options } : options;
    this.prefix = o.prefix ?? "sa";
    this.emit = o.outbox ? "1" : "0";
    const prelude = readFileSync(new URL("./lua/prelude.lua", import.meta.url), "utf8");
    for (const [name, { keys, file }] of Object.entries(SCRIPTS)) {
      const body = readFileSync(new URL(`./lua/${file}`, import.meta.url), "utf8");
      redis.defineCommand(name, { numberOfKeys: keys, lua: `${prelude}\n${body}` });
    }
    this.redis = redis as Client;
    this.coalesce = coalesceWrites(redis);
  }

  async createSession(session: StoredSession, refreshHash: Buffer, now: number): Promise<number | undefined> {
    const { base, m } = this.keysOf(session.sid);
    const nbf = await this.run(() =>
      this.redis.saCreate(
        `${base}s:${m}`, `${base}i`, `${base}n`,
        encodeSessionStatic(session), now, session.idleExpiresAt, session.absoluteExpiresAt, refreshHash, m, session.lastActivityAt,
      ),
    );
    return nbf === null ? undefined : Number(nbf);
  }

  async getSession(sid: string, now: number): Promise<SessionSnapshot | undefined> {
    const { base, m } = this.keysOf(sid);
    const reply: [Buffer, number, number, number, Buffer, Buffer, number, Buffer, Buffer] | null = await this.run(() =>
      this.redis.saGetBuffer(`${base}s:${m}`, `${base}g:${m}`, `${base}n`, now),
    );
    if (!reply) return undefined;
    const [blob, lastActivityAt, idleExpiresAt, absoluteExpiresAt, current, history, rotatedAt, sealed, nbf] = reply;
    return {
      session: sessionOf(sid, blob, lastActivityAt, idleExpiresAt, absoluteExpiresAt),
      refresh: {
        current,
        history: chunks(history, 16),
        rotatedAt,
        sealedSuccessor: sealed.length > 0 ? sealed : undefined,
      },
      userNotBefore: nbf.length > 0 ? Number(nbf.toString()) : undefined,
    };
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    if (!belongsTo(input.sid, input.userId)) return { outcome: "gone" };
    const { base, m } = this.keysOf(input.sid);
    const rate = input.refreshRate;
    // The ids only matter for the rare alert event, so they travel only when events are kept.
    const emitting = rate && this.emit === "1";
    const [outcome, idleExpiresAt, exceeded, recorded]: [string, number?, number?, string[]?] = await this.run(() =>
      this.redis.saRotate(
        `${base}s:${m}`, `${base}i`, `${base}g:${m}`, `${base}n`, `${base}o`,
        input.expected, input.next, input.sealedSuccessor, input.now, input.graceMs, input.idleTimeoutMs, input.historySize, m, input.issuedAt,
        rate?.limit ?? 0, rate?.windowMs ?? 0, this.emit, emitting ? input.userId : "", emitting ? input.sid : "",
      ),
    );
    if (outcome !== "rotated") return { outcome: outcome as "conflict" | "gone" };
    if (exceeded !== 1) return { outcome, idleExpiresAt: idleExpiresAt! };
    await this.recorded(base, recorded!);
    return { outcome, idleExpiresAt: idleExpiresAt!, rateExceeded: true };
  }

  async revokeOnReuse(input: ReuseInput): Promise<ReuseResult> {
    if (!belongsTo(input.sid, input.userId)) return "unknown";
    const { base, m } = this.keysOf(input.sid);
    const reply: string | [string, string[]] = await this.run(() =>
      this.redis.saReuse(
        `${base}s:${m}`, `${base}i`, `${base}g:${m}`, `${base}r:${m}`, `${base}o`,
        input.presented, input.now, input.graceMs, input.coverUntil, input.reason, m, this.emit, eventIdPrefix(), input.userId, input.sid,
      ),
    );
    if (typeof reply === "string") return reply as ReuseResult;
    await this.recorded(base, reply[1]);
    return "revoked";
  }

  async endSessions(input: EndSessionsInput): Promise<EndSessionsResult> {
    const { target } = input;
    let base = this.base(input.userId);
    const member = target.kind === "all" ? "" : localPartOfSessionId(target.sid);
    if (target.kind === "one" && !belongsTo(target.sid, input.userId)) {
      if (input.requireOwnership) return { found: false, ended: [], absoluteExpiresAt: [] };
      // An admin naming a session by id alone (it may have ended already): its
      // revocation is recorded under the id's own tag.
      base = this.keysOf(target.sid).base;
    }
    const mode = target.kind === "one" ? "one" : target.kind === "all" ? "all" : "others";
    const tag = base.slice(this.prefix.length + 2, -2);
    const [found, ended, recorded, absoluteExpiresAt]: [number, string[], string[], number[]] = await this.run(() =>
      this.redis.saEndSessions(
        `${base}i`, `${base}n`, `${base}o`,
        base, mode, member, input.now, input.coverUntil, input.reason, input.requireOwnership ? "1" : "0",
        this.emit, eventIdPrefix(), input.userId, tag,
      ),
    );
    await this.recorded(base, recorded);
    return { found: found === 1, ended: ended.map((m) => tag + m), absoluteExpiresAt };
  }

  async revokeToken(input: { userId: string; sid: string; jti: string; reason: number; now: number; coverUntil: number }): Promise<void> {
    if (input.coverUntil <= input.now) return;
    const { base } = this.keysOf(input.sid);
    const recorded: string[] = await this.run(() =>
      this.redis.saRevokeToken(
        `${base}j:${input.jti}`, `${base}o`,
        input.reason, input.now, input.coverUntil, this.emit, eventIdPrefix(), input.userId, input.sid, input.jti,
      ),
    );
    await this.recorded(base, recorded);
  }

  async checkToken(input: CheckInput): Promise<CheckResult> {
    const { base, m } = this.keysOf(input.sid);
    // A token whose sub and sid disagree was not issued by us; it is still checked
    // against the session's revocations but never touches the session.
    const touch = belongsTo(input.sid, input.userId) ? input.touchIntervalMs : -1;
    const reason: string | null = await this.run(() =>
      this.redis.saCheck(
        `${base}j:${input.jti}`, `${base}r:${m}`, `${base}n`, `${base}s:${m}`, `${base}i`,
        input.issuedAt, input.now, touch, input.idleTimeoutMs, m,
      ),
    );
    return reason === null ? { revoked: false } : { revoked: true, reason: Number(reason) };
  }

  async listSessions(userId: string, now: number): Promise<StoredSession[]> {
    const base = this.base(userId);
    const tag = userTag(userId);
    const flat: (Buffer | number)[] = await this.run(() => this.redis.saListBuffer(`${base}i`, base, now));
    const sessions: StoredSession[] = [];
    for (let i = 0; i < flat.length; i += 5) {
      const session = sessionOf(tag + String(flat[i]), flat[i + 1] as Buffer, Number(flat[i + 2]), Number(flat[i + 3]), Number(flat[i + 4]));
      // Belt and braces against two users sharing a 96-bit tag.
      if (session.userId === userId) sessions.push(session);
    }
    return sessions;
  }
  async putHandoff(input: HandoffInput): Promise<void> {
    const { base } = this.keysOf(input.sid);
    const value = Buffer.concat([Buffer.from(`${input.expiresAt}:`), input.sealed]);
    await this.run(() => this.redis.set(`${base}h:${input.codeHash.toString("base64url")}`, value, "PX", Math.max(1, input.expiresAt - input.now)));
  }

  async takeHandoff(input: { sid: string; codeHash: Buffer; now: number }): Promise<Buffer | undefined> {
    const { base } = this.keysOf(input.sid);
    // GETDEL: of two concurrent takes exactly one sees the value.
    const raw: Buffer | null = await this.run(() => this.redis.getdelBuffer(`${base}h:${input.codeHash.toString("base64url")}`));
    if (!raw) return undefined;
    const colon = raw.indexOf(0x3a);
    if (colon < 0 || input.now >= Number(raw.subarray(0, colon).toString())) return undefined;
    return raw.subarray(colon + 1);
  }

  async recordLogin(input: LoginSighting): Promise<LoginNovelty> {
    const base = this.base(input.userId);
    const [newDevice, newIp, recorded]: [number, number, string[]] = await this.run(() =>
      this.redis.saRecordLogin(
        `${base}d`, `${base}o`,
        input.deviceId, input.ip, input.now, input.keep, input.forgetAfterMs, this.emit, eventIdPrefix(), input.userId, input.sid,
      ),
    );
    await this.recorded(base, recorded);
    return { newDevice: newDevice === 1, newIp: newIp === 1 };
  }

  /**
   * Counts session keys with SCAN on every master, in steps of a small script
   * that returns only how many keys a step matched, so no key name crosses the
   * network. The cost is a walk over the whole keyspace (about 4 keys per
   * session), in short steps that never block Redis for long.
   */
  async countLiveSessions(now: number, maxAgeMs: number): Promise<number | undefined> {
    const statsKey = `${this.prefix}:stats:sessions`;
    const last: string | null = await this.run(() => this.redis.get(statsKey));
    const [count, at] = last ? last.split(":").map(Number) : [undefined, undefined];
    if (count !== undefined && now - at! < maxAgeMs) return count;
    // Whoever sets the lock recounts. It expires on its own, well before the next
    // count is due, so a replica that dies mid-count blocks nobody for long.
    const counting = await this.run(() => this.redis.set(`${this.prefix}:stats:counting`, "1", "PX", Math.max(1, Math.floor(maxAgeMs / 2)), "NX"));
    if (counting !== "OK") return count;
    let live = 0;
    for (const node of this.masters()) {
      let cursor = "0";
      do {
        const [next, matched]: [string, number] = await this.run(() => node.eval(SCAN_COUNT, 0, cursor, `${this.prefix}:{*}:s:*`) as Promise<[string, number]>);
        cursor = next;
        live += matched;
      } while (cursor !== "0");
    }
    await this.run(() => this.redis.set(statsKey, `${live}:${now}`, "PX", Math.max(1, 10 * maxAgeMs)));
    return live;
  }

  async readOutbox(limit: number): Promise<OutboxBatch> {
    const tags: string[] = await this.run(() => this.redis.srandmember(this.dirtyKey(), 64));
    const entries: { tag: string; raw: string }[] = [];
    for (const tag of tags) {
      if (entries.length >= limit) break;
      const found: string[] = await this.run(() => this.redis.lrange(`${this.prefix}:{${tag}}:o`, 0, limit - entries.length - 1));
      if (found.length === 0) await this.run(() => this.redis.srem(this.dirtyKey(), tag));
      for (const raw of found) entries.push({ tag, raw });
    }
    return this.batchOf(entries);
  }

  watchOutbox(listener: (batch: OutboxBatch) => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  /** Finds outboxes the dirty set lost track of (SCAN on every master; never KEYS). */
  async sweepOutbox(): Promise<void> {
    const pattern = `${this.prefix}:{*}:o`;
    let failure: unknown;
    // One master being down must not keep the others' outboxes from being found.
    for (const node of this.masters()) {
      try {
        let cursor = "0";
        do {
          const [next, keys]: [string, string[]] = await this.run(() => node.scan(cursor, "MATCH", pattern, "COUNT", 1000));
          cursor = next;
          const tags = keys.map((k) => k.slice(this.prefix.length + 2, k.length - 3));
          if (tags.length) await this.run(() => this.redis.sadd(this.dirtyKey(), ...tags));
        } while (cursor !== "0");
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure) throw failure;
  }

  async listSigningKeys(): Promise<StoredSigningKey[]> {
    const all: Record<string, string> = await this.run(() => this.redis.hgetall(`${this.prefix}:keys`));
    return Object.values(all).map((json) => JSON.parse(json) as StoredSigningKey);
  }

  async addSigningKey(key: StoredSigningKey): Promise<boolean> {
    return (await this.run(() => this.redis.hsetnx(`${this.prefix}:keys`, key.kid, JSON.stringify(key)))) === 1;
  }

  async addFirstSigningKey(key: StoredSigningKey): Promise<boolean> {
    return (await this.run(() => this.redis.saAddFirstKey(`${this.prefix}:keys`, key.kid, JSON.stringify(key)))) === 1;
  }

  async updateSigningKey(key: StoredSigningKey): Promise<void> {
    await this.run(() => this.redis.hset(`${this.prefix}:keys`, key.kid, JSON.stringify(key)));
  }

  async removeSigningKey(kid: string): Promise<void> {
    await this.run(() => this.redis.hdel(`${this.prefix}:keys`, kid));
  }

  async ping(): Promise<void> {
    // A cluster client sends PING to a random node, so with one master down the
    // answer would flap; reachable means some master answers.
    const masters = this.masters();
    await this.run(() => (masters.length === 1 ? masters[0]!.ping() : Promise.any(masters.map((node) => node.ping()))));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  /** The connection itself, or each master's connection of a cluster. */
  private masters(): Redis[] {
    return "nodes" in this.redis && typeof this.redis.nodes === "function" ? (this.redis as Cluster).nodes("master") : [this.redis as Redis];
  }

  private base(userId: string): string {
    return `${this.prefix}:{${userTag(userId)}}:`;
  }

  private dirtyKey(): string {
    return `${this.prefix}:outbox`;
  }

  /**
   * After a script recorded events: mark the user's outbox for the relay (a
   * separate command, see the class comment) and hand the events to watchers,
   * who can publish them without reading them back.
   */
  private async recorded(base: string, raws: string[]): Promise<void> {
    if (raws.length === 0) return;
    const tag = base.slice(this.prefix.length + 2, -2);
    await this.run(() => this.redis.sadd(this.dirtyKey(), tag));
    if (this.watchers.size === 0) return;
    const batch = this.batchOf(raws.map((raw) => ({ tag, raw })));
    for (const watcher of this.watchers) watcher(batch);
  }

  private batchOf(entries: { tag: string; raw: string }[]): OutboxBatch {
    const byId = new Map<string, { tag: string; raw: string }>();
    const events = entries.map((entry) => {
      const event = JSON.parse(entry.raw) as OutboxEvent;
      byId.set(event.id, entry);
      return event;
    });
    return {
      events,
      ack: async (ids) => {
        const byTag = new Map<string, string[]>();
        for (const id of ids) {
          const entry = byId.get(id);
          if (entry) byTag.set(entry.tag, [...(byTag.get(entry.tag) ?? []), entry.raw]);
        }
        for (const [tag, raws] of byTag) {
          const left: number = await this.run(() => this.redis.saOutboxAck(`${this.prefix}:{${tag}}:o`, ...raws));
          if (left === 0) await this.run(() => this.redis.srem(this.dirtyKey(), tag));
        }
      },
    };
  }

  private keysOf(sid: string): { base: string; m: string } {
    return { base: `${this.prefix}:{${tagOfSessionId(sid)}}:`, m: localPartOfSessionId(sid) };
  }

  /** Turns client and server failures into domain errors; the cause stays for logs. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    this.coalesce();
    try {
      return await command();
    } catch (e) {
      const err = e as Error & { name?: string };
      // ioredis hangs the command's arguments on its errors (refresh hashes, sealed
      // pairs); the cause goes to logs, so it keeps only the name and message.
      const cause = new Error(err.message);
      cause.name = err.name ?? "Error";
      if (err.name === "ReplyError" && !TRANSIENT_REPLY.test(err.message)) {
        throw new AuthorityError("internal", "the session store rejected a command", cause);
      }
      throw new AuthorityError("store_unavailable", "the session store is unavailable", cause);
    }
  }
}

const eventIdPrefix = () => secureRandomBytes(12).toString("base64url");

/** One SCAN step that answers with the next cursor and how many keys matched. ARGV: cursor, pattern */
const SCAN_COUNT = "local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000) return {r[1], #r[2]}";

function sessionOf(sid: string, blob: Buffer, lastActivityAt: number, idleExpiresAt: number, absoluteExpiresAt: number): StoredSession {
  return {
    sid, ...decodeSessionStatic(blob),
    lastActivityAt: Number(lastActivityAt), idleExpiresAt: Number(idleExpiresAt), absoluteExpiresAt: Number(absoluteExpiresAt),
  };
}

function chunks(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + size <= buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}
