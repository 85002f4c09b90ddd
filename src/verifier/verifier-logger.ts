import type { Logger } from "../shared/logger.js";

/**
 * The logging the verifier needs: pino's methods, so a pino logger (or a child
 * of one) fits as is. Tokens and keys are never passed to it.
 *
 * @example
 * ```ts
 * import { pino } from "pino";
 * const verifier = createVerifier({ ...options, logger: pino().child({ component: "verifier" }) });
 * ```
 */
export type VerifierLogger = Pick<Logger, "debug" | "info" | "warn" | "error">;
