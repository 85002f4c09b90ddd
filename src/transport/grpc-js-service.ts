import { fromBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../shared/logger.js";
import { encodeMessage } from "./encode-message.js";
import { ERROR_CODE_HEADER } from "./status-table.js";
import {
  bidiStreamingMethods, decodeRequest, requestIdFrom, serverStreamingMethods, toWireError, unaryMethods, type CallContext, type Handlers,
} from "./call-context.js";
import { clientCertificateOf } from "./peer-certificate.js";

/**
 * Serves protobuf-es handlers on a @grpc/grpc-js server (the fastest gRPC
 * transport measured here). Requests are decoded inside the handler wrapper so
 * a malformed payload is INVALID_ARGUMENT rather than grpc-js's INTERNAL.
 */
export function grpcJsService(
  service: DescService,
  handlers: Handlers,
  logger: Logger,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const { method, handler } of unaryMethods({ service, handlers })) {
    definition[method.localName] = methodDefinition(service, method, false, false);
    implementation[method.localName] = (call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const context = contextOf(call);
      let request;
      try {
        request = decodeRequest(method.input, call.request);
      } catch (error) {
        return fail(callback, error, logger, method.name, context.requestId);
      }
      handler(request, context).then(
        (response) => callback(null, response),
        (error) => fail(callback, error, logger, method.name, context.requestId),
      );
    };
  }
  for (const { method, handler } of serverStreamingMethods({ service, handlers })) {
    definition[method.localName] = methodDefinition(service, method, false, true);
    implementation[method.localName] = (call: grpc.ServerWritableStream<Buffer, unknown>) => {
      const { context, ended, failCall } = streamCall(call, logger, method.name);
      let request;
      try {
        request = decodeRequest(method.input, call.request);
      } catch (error) {
        return failCall(error);
      }
      pump(call, handler(request, context, ended.signal), ended).catch(failCall);
    };
  }
  for (const { method, handler } of bidiStreamingMethods({ service, handlers })) {
    definition[method.localName] = methodDefinition(service, method, true, true);
    implementation[method.localName] = (call: grpc.ServerDuplexStream<Buffer, unknown>) => {
      const { context, ended, failCall } = streamCall(call, logger, method.name);
      pump(call, handler(requestsOf(call, method.input), context, ended.signal), ended).catch(failCall);
    };
  }
  return { definition: definition as grpc.ServiceDefinition, implementation };
}

type StreamingCall = grpc.ServerWritableStream<Buffer, unknown> | grpc.ServerDuplexStream<Buffer, unknown>;

/** A streaming call's context, the signal that aborts when it ends, and how to end it with an error. */
function streamCall(call: StreamingCall, logger: Logger, method: string) {
  const context = contextOf(call);
  // grpc-js emits 'cancelled' on client cancel, deadline and shutdown.
  const ended = new AbortController();
  call.once("cancelled", () => ended.abort());
  const failCall = (error: unknown) => {
    if (ended.signal.aborted) return;
    ended.abort();
    const wire = toWireError(error, logger, method, context.requestId);
    const metadata = new grpc.Metadata();
    metadata.set(ERROR_CODE_HEADER, wire.domainCode);
    call.emit("error", { code: wire.code as number, details: wire.message, metadata });
  };
  return { context, ended, failCall };
}

/** Writes what the handler yields, with backpressure, then ends the call with OK (unless it ended first). */
async function pump(call: StreamingCall, messages: AsyncIterable<unknown>, ended: AbortController): Promise<void> {
  for await (const message of messages) {
    if (ended.signal.aborted) return;
    if (!call.write(message)) {
      await new Promise<void>((resolve) => {
        call.once("drain", resolve);
        ended.signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  }
  if (ended.signal.aborted) return;
  ended.abort();
  call.end();
}

/** The client's messages, decoded one by one; one that does not decode is INVALID_ARGUMENT. */
async function* requestsOf(call: grpc.ServerDuplexStream<Buffer, unknown>, input: DescMessage): AsyncGenerator<unknown> {
  // destroyOnReturn: false, or a handler that stops reading early would cancel the call before its answer went out.
  // (grpc-js ends this side when the call is cancelled, so the loop cannot outlive the call.)
  for await (const bytes of call.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) yield decodeRequest(input, bytes);
}

/**
 * How grpc-js frames a method: requests stay bytes until the handler wrapper
 * decodes them (so a bad payload is INVALID_ARGUMENT), responses are encoded here.
 */
function methodDefinition(
  service: DescService,
  method: { name: string; input: DescMessage; output: DescMessage },
  requestStream: boolean,
  responseStream: boolean,
): grpc.MethodDefinition<unknown, unknown> {
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream,
    responseStream,
    requestSerialize: (m: any) => encodeMessage(method.input, m),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (m: any) => encodeMessage(method.output, m),
    responseDeserialize: (b: Buffer) => fromBinary(method.output, b),
  };
}

function contextOf(call: grpc.ServerUnaryCall<Buffer, unknown> | StreamingCall): CallContext {
  const header = (name: string) => {
    const v = call.metadata.get(name)[0];
    return typeof v === "string" ? v : undefined;
  };
  // grpc-js reports a peer certificate only when the handshake verified it
  // against the client CA; an unverified one is as good as none.
  const clientCertificate = () => {
    const peer = call.getAuthContext().sslPeerCertificate;
    return peer ? clientCertificateOf(peer) : undefined;
  };
  return { header, requestId: requestIdFrom(header("x-request-id")), clientCertificate };
}

function fail(callback: grpc.sendUnaryData<unknown>, error: unknown, logger: Logger, method: string, requestId: string): void {
  const wire = toWireError(error, logger, method, requestId);
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_HEADER, wire.domainCode);
  callback({ code: wire.code as number, details: wire.message, metadata });
}
