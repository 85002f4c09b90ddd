import type { SessionStore } from "./session-store.js";

/**
 * The same store, with every failed call reported to `onError` (for the
 * store-error metric and alarm) before the caller sees it, whoever the caller
 * is: an RPC, the key ring or the outbox relay. Methods are wrapped once, here,
 * by walking the store's prototype chain, so a method added to the contract is
 * covered without touching this file.
 */
export function observeStoreErrors(store: SessionStore, onError: (error: unknown) => void): SessionStore {
  const observed = Object.create(store) as Record<string, unknown>;
  const seen = new Set<string>();
  for (let proto = Object.getPrototypeOf(store); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const descriptor = Object.getOwnPropertyDescriptor(proto, name)!;
      if (name === "constructor" || seen.has(name) || typeof descriptor.value !== "function") continue;
      seen.add(name);
      const method = descriptor.value as (...args: unknown[]) => unknown;
      observed[name] = (...args: unknown[]) => {
        const result = method.apply(store, args);
        // Only promises can fail later; watchOutbox and the like return plain values.
        if (result instanceof Promise) result.catch(onError);
        return result;
      };
    }
  }
  return observed as unknown as SessionStore;
}
