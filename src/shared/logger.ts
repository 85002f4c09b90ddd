import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Creates the process logger. Lines written for an RPC carry the call's
 * `requestId`, passed along explicitly (see CallScope): an AsyncLocalStorage
 * would do it implicitly, but on Node 20 it slows every promise of the process
 * and measured 5-15% more CPU per Refresh. Redaction is a second line of defence: code never passes tokens
 * or keys to the logger in the first place.
 */
export function createLogger(level = "info", destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "session-authority" },
      redact: {
        paths: ["*.authorization", "*.refreshToken", "*.accessToken", "*.refresh_token", "*.access_token", "*.apiKey", "*.privateKey"],
        censor: "[redacted]",
      },
    },
    destination as pino.DestinationStream | undefined,
  );
}

/** A logger that discards everything; handy default for libraries and tests. */
export const silentLogger: Logger = pino({ level: "silent" });
