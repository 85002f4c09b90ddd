import { readFileSync } from "node:fs";
import type { Cluster, Redis } from "ioredis";
import { AuthorityError } from "../shared/errors.js";
import { decodeSessionStatic, encodeSessionStatic } from "./session-codec.js";
import { belongsTo, localPartOfSessionId, tagOfSessionId, userTag } from "./session-id.js";
import type {
  CheckInput, CheckResult, EndSessionsInput, EndSessionsResult, ReuseInput, ReuseResult, RotateInput,
  RotateResult, SessionSnapshot, SessionStore, StoredSession, StoredSigningKey,
} from "./session-store.js";

const SCRIPTS = {
  saCreate: { keys: 3, file: "create.lua" },
  saGet: { keys: 3, file: "get.lua" },
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
 * Key layout under `<prefix>:{<tag>}:` where tag = userTag(userId) and m is the
 * random part of a session id (the tag is already in the prefix):
 *   s:<m>     session (MessagePack, see lua/prelude.lua), expires with the session
 *   g:<m>     "<until ms>:" + sealed successor pair, for the refresh grace window
 *   r:<m>     session revocation (reason), for as long as its access tokens live
 *   j:<jti>   access-token revocation (reason), until the token expires
 *   i         sorted set of the user's sessions (m) scored by expiry
 *   n         the user's not-before ("<seconds>:<reason>")
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
    const [outcome, idleExpiresAt]: [string, number?] = await this.run(() =>
      this.redis.saRotate(
        `${base}s:${m}`, `${base}i`, `${base}g:${m}`,
        input.expected, input.next, input.sealedSuccessor, input.now, input.graceMs, input.idleTimeoutMs, input.historySize, m,
      ),
    );
    if (outcome === "rotated") return { outcome, idleExpiresAt: idleExpiresAt! };
    return { outcome: outcome as "conflict" | "gone" };
  }

  async revokeOnReuse(input: ReuseInput): Promise<ReuseResult> {
    if (!belongsTo(input.sid, input.userId)) return "unknown";
    const { base, m } = this.keysOf(input.sid);
    return this.run(() =>
      this.redis.saReuse(
        `${base}s:${m}`, `${base}i`, `${base}g:${m}`, `${base}r:${m}`,
        input.presented, input.now, input.graceMs, input.coverUntil, input.reason, m,
      ),
    );
  }

  async endSessions(input: EndSessionsInput): Promise<EndSessionsResult> {
    const { target } = input;
    let base = this.base(input.userId);
    const member = target.kind === "all" ? "" : localPartOfSessionId(target.sid);
    if (target.kind === "one" && !belongsTo(target.sid, input.userId)) {
      if (input.requireOwnership) return { found: false, ended: [] };
      // An admin naming a session by id alone (it may have ended already): its
      // revocation is recorded under the id's own tag.
      base = this.keysOf(target.sid).base;
    }
    const mode = target.kind === "one" ? "one" : target.kind === "all" ? "all" : "others";
    const [found, ...ended]: [number, ...string[]] = await this.run(() =>
      this.redis.saEndSessions(
        `${base}i`, `${base}n`,
        base, mode, member, input.now, input.coverUntil, input.reason, input.requireOwnership ? "1" : "0",
      ),
    );
    const tag = base.slice(this.prefix.length + 2, -2);
    return { found: found === 1, ended: ended.map((m) => tag + m) };
  }

  async revokeToken(input: { userId: string; sid: string; jti: string; reason: number; now: number; coverUntil: number }): Promise<void> {
    const ttl = input.coverUntil - input.now;
    if (ttl <= 0) return;
    await this.run(() => this.redis.set(`${this.keysOf(input.sid).base}j:${input.jti}`, String(input.reason), "PX", ttl));
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

  private keysOf(sid: string): { base: string; m: string } {
    return { base: `${this.prefix}:{${tagOfSessionId(sid)}}:`, m: localPartOfSessionId(sid) };
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
