import type { IncomingMessage, ServerResponse } from "node:http";
import { invalidArgument } from "../shared/errors.js";

/**
 * A handler for some paths of the HTTP port (beside Connect): it answers the
 * request and returns true, or returns false for a path that is not its own.
 */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => boolean;

/** Bodies of the JSON endpoints are small; a larger one is refused unread. */
const MAX_BODY_BYTES = 4096;

/** Sends a JSON answer, unless one was sent already. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** A request header that appears once, or undefined. */
export function headerOf(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === "string" ? v : undefined;
}

/** The body as a JSON object; an empty body is {}. Anything else is invalid_argument. */
export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw invalidArgument(`request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (!text) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalidArgument("request body is not JSON");
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw invalidArgument("request body must be a JSON object");
  return parsed as Record<string, unknown>;
}
