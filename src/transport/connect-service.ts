import type { DescService } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "../shared/logger.js";
import { ERROR_CODE_HEADER } from "./status-table.js";
import { requestIdFrom, serverStreamingMethods, toWireError, unaryMethods, type CallContext, type Handlers, type ServedService } from "./call-context.js";

/** Registers the same handlers on a Connect router (Connect, gRPC-Web and gRPC for browsers and curl). */
export function connectService(router: ConnectRouter, service: DescService, handlers: Handlers, logger: Logger): void {
  const implementation: Record<string, (req: unknown, ctx: HandlerContext) => unknown> = {};
  const rethrow = (error: unknown, method: string, context: CallContext): never => {
    const wire = toWireError(error, logger, method, context.requestId);
    throw new ConnectError(wire.message, wire.code, { [ERROR_CODE_HEADER]: wire.domainCode });
  };
  for (const { method, handler } of unaryMethods({ service, handlers })) {
    implementation[method.localName] = async (request, ctx) => {
      const context = contextOf(ctx);
      try {
        return await handler(request, context);
      } catch (error) {
        return rethrow(error, method.name, context);
      }
    };
  }
  for (const { method, handler } of serverStreamingMethods({ service, handlers })) {
    // ctx.signal aborts on client disconnect, deadline and server shutdown alike.
    implementation[method.localName] = async function* (request, ctx) {
      const context = contextOf(ctx);
      try {
        yield* handler(request, context, ctx.signal);
      } catch (error) {
        rethrow(error, method.name, context);
      }
    };
  }
  router.service(service, implementation as never);
}

function contextOf(ctx: HandlerContext): CallContext {
  return {
    header: (name) => ctx.requestHeader.get(name) ?? undefined,
    requestId: requestIdFrom(ctx.requestHeader.get("x-request-id") ?? undefined),
  };
}

/**
 * A node:http request handler serving `services` over Connect, gRPC-Web and
 * gRPC, with the limits and JSON strictness every port of ours shares.
 */
export function connectHandler(services: ServedService[], logger: Logger, maxMessageBytes: number): ReturnType<typeof connectNodeAdapter> {
  return connectNodeAdapter({
    routes: (router) => {
      for (const { service, handlers } of services) connectService(router, service, handlers, logger);
    },
    readMaxBytes: maxMessageBytes,
    // Strict proto3 JSON: an unknown field or enum name is INVALID_ARGUMENT, as an
    // unknown enum number already is in binary. Lenient parsing (connect's default)
    // would turn e.g. an unknown Logout scope into UNSPECIFIED, i.e. CURRENT.
    jsonOptions: { ignoreUnknownFields: false },
  });
}
