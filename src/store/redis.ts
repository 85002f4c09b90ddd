import { readFileSync } from "node:fs";
import type { Cluster, Redis } from "ioredis";
import { AuthorityError } from "../shared/errors.js";
import { tagOfSessionId, userTag } from "./session-id.js";
import type {
  CheckInput, CheckResult, EndSessionsInput, EndSessionsResult, ReuseInput, ReuseResult, RotateInput,
  RotateResult, SessionSnapshot, SessionStore, StoredSession, StoredSigningKey,
} from "./session-store.js";

const SCRIPTS = {
  saCreate: { keys: 3, file: "create.lua" },
  saGet: { keys: 2, file: "get.lua" },
  saRotate: { keys: 3, file: "rotate.lua" },
  saReuse: { keys: 4, file: "reuse.lua" },
  saEndSessions: { keys: 2, file: "end-sessions.lua" },
  saCheck: { keys: 5, file: "check.lua" },
  saList: { keys: 1, file: "list.lua" },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Client = (Redis | Cluster) & Record<ScriptName | `${ScriptName}Buffer`, (...args: unknown[]) => Promise<any>>;

/** Redis replies that mean "not now", not "your request is wrong". */
const TRANSIENT_REPLY = /^(LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|BUSY|MOVED|ASK|OOM)/;

/**
 * The production store. Works on a single Redis and on Redis Cluster: every key
 * of a user carries the user's hash tag, so each script touches one slot.
 *
 * Key layout under `<prefix>:{<tag>}:` where tag = userTag(userId):
 *   s:<sid>   session (MessagePack, see lua/prelude.lua), expires with the session
 *   g:<sid>   sealed successor pair, for the refresh grace window
 *   r:<sid>   session revocation (reason), for as long as its access tokens live
 *   j:<jti>   access-token revocation (reason), until the token expires
 *   i:<uid>   sorted set of the user's sessions scored by expiry
 *   n:<uid>   the user's not-before ("<seconds>:<reason>")
 * and `<prefix>:keys`, a hash of signing keys by kid.
 */
export class RedisSessionStore implements SessionStore {
  private readonly redis: Client;

  constructor(redis: Redis | Cluster, private readonly prefix = "sa") {
    const prelude = readFileSync(new URL("./lua/prelude.lua", import.meta.url), "utf8");
    for (const [name, { keys, file }] of Object.entries(SCRIPTS)) {
      const body = readFileSync(new URL(`./lua/${file}`, import.meta.url), "utf8");
      redis.defineCommand(name, { numberOfKeys: keys, lua: `${prelude}\n${body}` });
    }
    this.redis = redis as Client;
  }

  async createSession(session: StoredSession, refreshHash: Buffer, now: number): Promise<number | undefined> {
    const base = this.base(session.userId);
    const nbf = await this.run(() =>
      this.redis.saCreate(
        `${base}s:${session.sid}`, `${base}i:${session.userId}`, `${base}n:${session.userId}`,
        encodeStatic(session), now, session.idleExpiresAt, session.absoluteExpiresAt, refreshHash, session.sid,
      ),
    );
    return nbf === null ? undefined : Number(nbf);
  }

  async getSession(sid: string, now: number): Promise<SessionSnapshot | undefined> {
    const base = this.baseOfSession(sid);
    const reply: [Buffer, number, number, number, Buffer, Buffer, number, Buffer, Buffer] | null = await this.run(() =>
      this.redis.saGetBuffer(`${base}s:${sid}`, `${base}g:${sid}`, now, base),
    );
    if (!reply) return undefined;
    const [raw, lastActivityAt, idleExpiresAt, absoluteExpiresAt, current, history, rotatedAt, sealed, nbf] = reply;
    return {
      session: decodeStatic(sid, raw.toString("utf8"), lastActivityAt, idleExpiresAt, absoluteExpiresAt),
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
    const base = this.baseOfSession(input.sid);
    const [outcome, idleExpiresAt]: [string, number?] = await this.run(() =>
      this.redis.saRotate(
        `${base}s:${input.sid}`, `${base}i:${input.userId}`, `${base}g:${input.sid}`,
        input.expected, input.next, input.sealedSuccessor, input.now, input.graceMs, input.idleTimeoutMs, input.historySize, input.sid,
      ),
    );
    if (outcome === "rotated") return { outcome, idleExpiresAt: idleExpiresAt! };
    return { outcome: outcome as "conflict" | "gone" };
  }

  async revokeOnReuse(input: ReuseInput): Promise<ReuseResult> {
    const base = this.baseOfSession(input.sid);
    return this.run(() =>
      this.redis.saReuse(
        `${base}s:${input.sid}`, `${base}i:${input.userId}`, `${base}g:${input.sid}`, `${base}r:${input.sid}`,
        input.presented, input.now, input.graceMs, input.coverUntil, input.reason, input.sid,
      ),
    );
  }

  async endSessions(input: EndSessionsInput): Promise<EndSessionsResult> {
    const { target } = input;
    // A session named by id alone (admin revoke of an ended session) still has its
    // slot: the tag is the id's prefix.
    const base = target.kind === "one" ? this.baseOfSession(target.sid) : this.base(input.userId);
    const mode = target.kind === "one" ? "one" : target.kind === "all" ? "all" : "others";
    const sid = target.kind === "all" ? "" : target.sid;
    const [found, ...ended]: [number, ...string[]] = await this.run(() =>
      this.redis.saEndSessions(
        `${base}i:${input.userId}`, `${base}n:${input.userId}`,
        base, mode, sid, input.now, input.coverUntil, input.reason, input.requireOwnership ? "1" : "0",
      ),
    );
    return { found: found === 1, ended };
  }

  async revokeToken(input: { userId: string; sid: string; jti: string; reason: number; now: number; coverUntil: number }): Promise<void> {
    const ttl = input.coverUntil - input.now;
    if (ttl <= 0) return;
    await this.run(() => this.redis.set(`${this.baseOfSession(input.sid)}j:${input.jti}`, String(input.reason), "PX", ttl));
  }

  async checkToken(input: CheckInput): Promise<CheckResult> {
    const base = this.baseOfSession(input.sid);
    const reason: string | null = await this.run(() =>
      this.redis.saCheck(
        `${base}j:${input.jti}`, `${base}r:${input.sid}`, `${base}n:${input.userId}`, `${base}s:${input.sid}`, `${base}i:${input.userId}`,
        input.issuedAt, input.now, input.touchIntervalMs, input.idleTimeoutMs, input.sid,
      ),
    );
    return reason === null ? { revoked: false } : { revoked: true, reason: Number(reason) };
  }

  async listSessions(userId: string, now: number): Promise<StoredSession[]> {
    const base = this.base(userId);
    const flat: (string | number)[] = await this.run(() => this.redis.saList(`${base}i:${userId}`, base, now));
    const sessions: StoredSession[] = [];
    for (let i = 0; i < flat.length; i += 5) {
      sessions.push(decodeStatic(String(flat[i]), String(flat[i + 1]), Number(flat[i + 2]), Number(flat[i + 3]), Number(flat[i + 4])));
    }
    return sessions;
  }

  async listSigningKeys(): Promise<StoredSigningKey[]> {
    const all: Record<string, string> = await this.run(() => this.redis.hgetall(`${this.prefix}:keys`));
    return Object.values(all).map((json) => JSON.parse(json) as StoredSigningKey);
  }

  async addSigningKey(key: StoredSigningKey): Promise<boolean> {
    return (await this.run(() => this.redis.hsetnx(`${this.prefix}:keys`, key.kid, JSON.stringify(key)))) === 1;
  }

  async updateSigningKey(key: StoredSigningKey): Promise<void> {
    await this.run(() => this.redis.hset(`${this.prefix}:keys`, key.kid, JSON.stringify(key)));
  }

  async removeSigningKey(kid: string): Promise<void> {
    await this.run(() => this.redis.hdel(`${this.prefix}:keys`, kid));
  }

  async ping(): Promise<void> {
    await this.run(() => this.redis.ping());
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private base(userId: string): string {
    return `${this.prefix}:{${userTag(userId)}}:`;
  }

  private baseOfSession(sid: string): string {
    return `${this.prefix}:{${tagOfSessionId(sid)}}:`;
  }

  /** Turns client and server failures into domain errors; the cause stays for logs. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (e) {
      const err = e as Error & { name?: string };
      if (err.name === "ReplyError" && !TRANSIENT_REPLY.test(err.message)) {
        throw new AuthorityError("internal", "the session store rejected a command", e);
      }
      throw new AuthorityError("store_unavailable", "the session store is unavailable", e);
    }
  }
}

/** Immutable session fields as one compact JSON array (no field names: smaller in memory). */
function encodeStatic(s: StoredSession): string {
  return JSON.stringify([s.userId, s.username, s.roles, s.permissions, s.clientId, s.deviceId, s.deviceName, s.userAgent, s.ip, s.createdAt]);
}

function decodeStatic(sid: string, json: string, lastActivityAt: number, idleExpiresAt: number, absoluteExpiresAt: number): StoredSession {
  const [userId, username, roles, permissions, clientId, deviceId, deviceName, userAgent, ip, createdAt] = JSON.parse(json);
  return {
    sid, userId, username, roles, permissions, clientId, deviceId, deviceName, userAgent, ip, createdAt,
    lastActivityAt: Number(lastActivityAt), idleExpiresAt: Number(idleExpiresAt), absoluteExpiresAt: Number(absoluteExpiresAt),
  };
}

function chunks(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + size <= buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}
