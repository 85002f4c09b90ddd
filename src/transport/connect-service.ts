import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "../shared/logger.js";
import { ERROR_CODE_HEADER } from "./status-table.js";
import { requestIdFrom, toWireError, type CallContext, type UnaryHandler } from "./call-context.js";

/** Registers the same handlers on a Connect router (Connect, gRPC-Web and gRPC for browsers and curl). */
export function connectService(router: ConnectRouter, service: DescService, handlers: Record<string, UnaryHandler>, logger: Logger): void {
  const implementation: Record<string, (req: unknown, ctx: HandlerContext) => Promise<unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    const handler = handlers[method.localName];
    if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
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
