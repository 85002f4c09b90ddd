import type { KeyObject } from "node:crypto";
import { Worker } from "node:worker_threads";
import type { SigningAlgorithm } from "../config/config.js";
import { AuthorityError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

// The thread's whole program, handed to the Worker as CommonJS source (and without
// the parent's flags, such as a loader or --input-type) so that it runs the same
// under tsx, vitest and the built package, with no file to locate.
const PROGRAM = `
const { parentPort } = require("node:worker_threads");
const { sign } = require("node:crypto");
const keys = new Map();
parentPort.on("message", (m) => {
  if (m.kid !== undefined) return void keys.set(m.kid, m.key);
  parentPort.postMessage(m.jobs.map(([kid, alg, input]) => {
    try {
      const key = keys.get(kid);
      const data = Buffer.from(input, "latin1");
      // JWS wants r||s (IEEE P1363) for ES256, not DER.
      const signature = alg === "EdDSA" ? sign(null, data, key)
        : sign("sha256", data, alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key);
      return signature.toString("base64url");
    } catch (e) {
      return { error: String(e && e.message) };
    }
  }));
});
`;

type Job = [kid: string, alg: SigningAlgorithm, input: string];
type Answer = string | { error: string };
interface Owed {
  resolve: (signature: string) => void;
  reject: (error: Error) => void;
}

/** One running thread and what it has been told. */
interface Thread {
  worker: Worker;
  /** Key ids whose private key the thread holds. */
  keys: Set<string>;
  /** Batches sent and not yet answered, oldest first: the thread answers in order. */
  owed: Owed[][];
}

/**
 * Makes JWS signatures on a thread of its own, a turn's worth at a time.
 *
 * Why not node:crypto's callback form (libuv's pool): every signature there wakes
 * a pool thread, and on two cores four pool threads waking at every refresh
 * preempt the event loop that limits the authority (Refresh@64: 1.10-1.45× the
 * pool's throughput and 0.79-0.92× its p99, five interleaved pairs,
 * BENCHMARKS.md); a pool thread stuck in a slow DNS lookup would also hold
 * signatures up. Here one message per event-loop turn carries all of that turn's
 * signing inputs.
 *
 * A thread that dies fails what it owed and is replaced at the next signature.
 */
export class SigningWorker {
  private thread: Thread | undefined;
  private jobs: Job[] = [];
  private owed: Owed[] = [];
  /** Private keys by kid, for (re)teaching a thread. */
  private readonly privateKeys = new Map<string, KeyObject>();
  private closed = false;

  constructor(private readonly logger: Logger) {}

  /** Resolves to the base64url signature of `input`, a JWS signing input (ASCII). */
  sign(kid: string, alg: SigningAlgorithm, key: KeyObject, input: string): Promise<string> {
    if (this.closed) return Promise.reject(closedError());
    this.privateKeys.set(kid, key);
    if (this.jobs.length === 0) setImmediate(() => this.flush());
    this.jobs.push([kid, alg, input]);
    return new Promise((resolve, reject) => this.owed.push({ resolve, reject }));
  }

  /** Stops the thread; signatures still owed are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const error = closedError();
    const thread = this.thread;
    this.thread = undefined;
    this.fail(this.owed.splice(0), error);
    this.jobs = [];
    for (const owed of thread?.owed.splice(0) ?? []) this.fail(owed, error);
    await thread?.worker.terminate();
  }

  private flush(): void {
    if (this.jobs.length === 0) return;
    const thread = (this.thread ??= this.start());
    for (const [kid] of this.jobs) {
      if (thread.keys.has(kid)) continue;
      thread.worker.postMessage({ kid, key: this.privateKeys.get(kid) });
      thread.keys.add(kid);
    }
    thread.worker.postMessage({ jobs: this.jobs });
    if (thread.owed.length === 0) thread.worker.ref();
    thread.owed.push(this.owed);
    this.jobs = [];
    this.owed = [];
  }

  private start(): Thread {
    const thread: Thread = { worker: new Worker(PROGRAM, { eval: true, execArgv: [] }), keys: new Set(), owed: [] };
    thread.worker.on("message", (answers: Answer[]) => {
      const owed = thread.owed.shift()!;
      if (thread.owed.length === 0) thread.worker.unref();
      owed.forEach((o, i) => {
        const answer = answers[i]!;
        if (typeof answer === "string") o.resolve(answer);
        else o.reject(new AuthorityError("internal", "the access token could not be signed", new Error(answer.error)));
      });
    });
    const lost = (error: Error) => {
      if (this.thread !== thread) return; // closed, or already replaced
      this.thread = undefined;
      this.logger.error({ err: error, owed: thread.owed.reduce((n, batch) => n + batch.length, 0) }, "signing thread lost; the next signature starts another");
      // Nothing was stored for these calls yet (a rotation signs before its compare-and-set): a retry is safe.
      const refused = new AuthorityError("unavailable", "signing was interrupted; retry", error);
      for (const owed of thread.owed.splice(0)) this.fail(owed, refused);
    };
    thread.worker.on("error", lost);
    thread.worker.on("exit", (code) => lost(new Error(`exited with code ${code}`)));
    // Only owed signatures keep the process alive, not an idle thread. After the
    // listeners: adding a message listener refs the thread again.
    thread.worker.unref();
    return thread;
  }

  private fail(owed: Owed[], error: Error): void {
    for (const o of owed) o.reject(error);
  }
}

const closedError = () => new AuthorityError("unavailable", "the authority is shutting down");
