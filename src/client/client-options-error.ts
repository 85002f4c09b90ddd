/**
 * A bad option given to a client factory, named. Thrown when the object is built,
 * never later.
 *
 * @example
 * ```ts
 * try {
 *   createSessionClient({ baseUrl: "auth.example.com" });
 * } catch (error) {
 *   if (error instanceof ClientOptionsError) console.error(error.option, error.message); // "baseUrl", "… is not an absolute URL …"
 * }
 * ```
 */
export class ClientOptionsError extends TypeError {
  override readonly name = "ClientOptionsError";
  constructor(
    readonly option: string,
    problem: string,
  ) {
    super(`session client: option ${option} ${problem}`);
  }
}

/** Checks an http(s) URL and drops trailing slashes, so paths can be appended. */
export function checkBaseUrl(value: unknown, option: string): string {
  if (typeof value !== "string" || !value) throw new ClientOptionsError(option, "must be a non-empty URL string");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ClientOptionsError(option, `is not an absolute URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new ClientOptionsError(option, "must be an http: or https: URL");
  if (url.search || url.hash) throw new ClientOptionsError(option, "must not have a query or fragment");
  return url.href.replace(/\/+$/, "");
}

/** An optional function option. */
export function checkFunction<T>(value: T | undefined, option: string): T | undefined {
  if (value !== undefined && typeof value !== "function") throw new ClientOptionsError(option, "must be a function");
  return value;
}

/** An optional whole number of milliseconds, at least `min`; `fallback` when absent. */
export function checkMs(value: unknown, option: string, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new ClientOptionsError(option, `must be an integer of at least ${min}, not ${JSON.stringify(value)}`);
  }
  return value;
}
