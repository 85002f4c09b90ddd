// A real pino logger writing into memory, to assert what was logged.
import { createLogger, type Logger } from "../../src/shared/logger.js";

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

export function captureLogger(): { logger: Logger; lines: LogLine[]; messages(level: keyof typeof LEVEL): string[] } {
  const lines: LogLine[] = [];
  // pino writes each line synchronously to anything with a write() method.
  const sink = { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) };
  const logger = createLogger("debug", sink as unknown as NodeJS.WritableStream);
  return { logger, lines, messages: (level) => lines.filter((l) => l.level === LEVEL[level]).map((l) => l.msg) };
}
