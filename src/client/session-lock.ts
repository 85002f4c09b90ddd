/**
 * A held lock. `contended` tells whether someone else held it when it was asked for:
 * a refresher that waited re-checks for a token another context just obtained.
 *
 * @example
 * ```ts
 * const handle: LockHandle = await lock.acquire("app:refresh", signal);
 * if (handle.contended) recheckForAFreshToken();
 * handle.release();
 * ```
 */
export interface LockHandle {
  readonly contended: boolean;
  /** Idempotent. */
  release(): void;
}

/**
 * Named mutual exclusion between SDK instances: across browser tabs with Web Locks,
 * within one JavaScript context otherwise. The client never waits on it forever: it
 * aborts `signal` after its lock timeout and then goes ahead without the lock (the
 * authority's refresh grace window makes two racing refreshes harmless).
 *
 * @example
 * ```ts
 * const lock: SessionLock = createWebLocksLock(navigator.locks);
 * const handle = await lock.acquire("session-authority:refresh", AbortSignal.timeout(10_000));
 * try { await doRefresh(); } finally { handle.release(); }
 * ```
 */
export interface SessionLock {
  /** Resolves once the lock named `name` is held; rejects with the signal's reason if it aborts first. */
  acquire(name: string, signal: AbortSignal): Promise<LockHandle>;
}

/**
 * The subset of the Web Locks `LockManager` this adapter uses.
 *
 * @example
 * ```ts
 * const locks: WebLockManager = navigator.locks;
 * ```
 */
export interface WebLockManager {
  request(name: string, options: { ifAvailable?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => unknown): Promise<unknown>;
}

/**
 * A SessionLock on the Web Locks API, shared by every tab and worker of the origin.
 * A tab that closes releases its locks, so a crashed holder never blocks the others.
 *
 * @example
 * ```ts
 * const client = createSessionClient({ baseUrl, lock: createWebLocksLock(navigator.locks) });
 * ```
 */
export function createWebLocksLock(locks: WebLockManager): SessionLock {
  return {
    acquire(name, signal) {
      return new Promise<LockHandle>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        let contended = false;
        // The lock is held for as long as the callback's promise is pending.
        const hold = () =>
          new Promise<void>((release) => {
            let released = false;
            resolve({
              contended,
              release: () => {
                if (released) return;
                released = true;
                release();
              },
            });
          });
        // Ask without waiting first, to learn whether another context holds it.
        locks
          .request(name, { ifAvailable: true }, (lock) => {
            if (lock) return hold();
            contended = true;
            return undefined;
          })
          .then(() => (contended ? locks.request(name, { signal }, hold) : undefined))
          .catch(reject);
      });
    },
  };
}

/**
 * A SessionLock within one JavaScript context (the fallback where Web Locks are
 * missing, e.g. Node). Share one instance between clients that should coordinate.
 *
 * @example
 * ```ts
 * const lock = createInProcessLock();
 * const a = createSessionClient({ baseUrl, lock });
 * const b = createSessionClient({ baseUrl, lock });
 * ```
 */
export function createInProcessLock(): SessionLock {
  const queues = new Map<string, Array<() => void>>();

  const handleFor = (name: string, contended: boolean): LockHandle => {
    let released = false;
    return {
      contended,
      release() {
        if (released) return;
        released = true;
        const queue = queues.get(name)!;
        const next = queue.shift();
        if (next) next();
        else queues.delete(name);
      },
    };
  };

  return {
    acquire(name, signal) {
      return new Promise<LockHandle>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        const queue = queues.get(name);
        if (!queue) {
          queues.set(name, []);
          return resolve(handleFor(name, false));
        }
        const grant = () => {
          signal.removeEventListener("abort", onAbort);
          resolve(handleFor(name, true));
        };
        const onAbort = () => {
          const at = queue.indexOf(grant);
          if (at >= 0) queue.splice(at, 1);
          reject(signal.reason);
        };
        queue.push(grant);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    },
  };
}

/** Web Locks when the platform has them (browsers), else a lock private to this client. */
export function defaultSessionLock(): SessionLock {
  const locks = (globalThis as { navigator?: { locks?: WebLockManager } }).navigator?.locks;
  return locks && typeof locks.request === "function" ? createWebLocksLock(locks) : createInProcessLock();
}
