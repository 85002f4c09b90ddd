import type { DescService } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "../shared/logger.js";
import { ERROR_CODE_HEADER } from "./status-table.js";
import { requestIdFrom, toWireError, unaryMethods, type CallContext, type ServedService, type UnaryHandler } from "./call-context.js";

/** Registers the same handlers on a Connect router (Connect, gRPC-Web and gRPC for browsers and curl). */
export function connectService(router: ConnectRouter, service: DescService, handlers: Record<string, UnaryHandler>, logger: Logger): void {
  const implementation: Record<string, (req: unknown, ctx: HandlerContext) => Promise<unknown>> = {};
  for (const { method, handler } of unaryMethods({ service, handlers })) {
    implementation[method.localName] = async (request, ctx) => {
      const context: CallContext = {
        header: (name) => ctx.requestHeader.get(name) ?? undefined,
        requestId: requestIdFrom(ctx.requestHeader.get("x-request-id") ?? undefined),
      };
      try {
        return await handler(request, context);
      } catch (error) {
        const wire = toWireError(error, logger, method.name, context.requestId);
        throw new ConnectError(wire.message, wire.code, { [ERROR_CODE_HEADER]: wire.domainCode });
      }
    };
  }
  router.service(service, implementation as never);
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
