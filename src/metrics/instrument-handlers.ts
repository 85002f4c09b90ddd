import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Histogram } from "prom-client";
import { AuthorityError } from "../shared/errors.js";
import type { Handlers, UnaryHandler } from "../transport/call-context.js";
import { STATUS_OF } from "../transport/status-table.js";

/** gRPC status names by number, as the `code` label spells them. */
const CODE_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/** The status a transport will send for what a handler threw (the same table toWireError uses). */
function statusOf(error: unknown): number {
  if (error instanceof AuthorityError) return STATUS_OF[error.code];
  if (error instanceof ConnectError) return error.code;
  return Code.Internal;
}

type Observer = { observe(seconds: number): void };

/**
 * Wraps the unary handlers of a service once, for every transport that serves
 * them: each call runs in its request scope (so its log lines carry the
 * request id) and its duration is observed in `histogram` by method and status
 * code. The time is the handler's own: decoding, encoding and queueing in the
 * transport are not in it, nor are calls a transport refused before the handler
 * (a malformed message, an unknown method). Label children are resolved once
 * per method and code, not per call. Streaming handlers (WatchSession) pass
 * through as they are: a stream's length is no latency.
 */
export function instrumentHandlers<H extends Handlers>(service: DescService, handlers: H, histogram: Histogram<"method" | "code">): H {
  const wrapped: Handlers = { ...handlers };
  for (const method of service.methods) {
    const handler = handlers[method.localName] as UnaryHandler | undefined;
    if (method.methodKind !== "unary" || !handler) continue;
    const byCode: (Observer | undefined)[] = [];
    const child = (code: number): Observer => (byCode[code] ??= histogram.labels(method.name, CODE_NAMES[code] ?? String(code)));
    const ok = child(0);
    const instrumented: UnaryHandler = async (request, context) => {
      const started = performance.now();
      try {
        const response = await handler(request, context);
        ok.observe((performance.now() - started) / 1000);
        return response;
      } catch (error) {
        child(statusOf(error)).observe((performance.now() - started) / 1000);
        throw error;
      }
    };
    wrapped[method.localName] = instrumented;
  }
  return wrapped as H;
}
