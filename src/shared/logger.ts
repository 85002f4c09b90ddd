import { pino, type Logger } from "pino";
import { requestContext } from "./request-context.js";

export type { Logger };

/**
 * Creates the process logger. A line written during an RPC carries the call's
 * `requestId`. Redaction is a second line of defence: code never passes tokens
 * or keys to the logger in the first place.
 */
export function createLogger(level = "info", destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "session-authority" },
      // A fresh object per line: pino merges the line's own fields into it.
      mixin: () => {
        const scope = requestContext.getStore();
        return scope ? { requestId: scope.requestId } : {};
      },
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
