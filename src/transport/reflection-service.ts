import { create, type DescMessage, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ServerReflection, ServerReflectionResponseSchema } from "../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1Alpha, ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1Alpha,
} from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { BidiStreamHandler, ServedService } from "./call-context.js";
import { DescriptorIndex } from "./descriptor-index.js";

/**
 * What both reflection versions ask: v1 and v1alpha are the same messages under
 * two package names, so one function answers both.
 */
interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: undefined; value?: undefined };
}

type ResponseInit = MessageInitShape<typeof ServerReflectionResponseSchema>;

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) over `services`, so
 * grpcurl, grpcui, Postman and the like can list them and build calls without
 * the .proto files. Serve the result next to `services` on a gRPC port: the
 * reflection services list themselves too. Lookups that find nothing answer
 * an error_response (NOT_FOUND) on the stream, which stays open, as the
 * protocol wants; only a malformed request message ends the call.
 */
export function reflectionServices(services: DescService[]): ServedService[] {
  const index = new DescriptorIndex([...services, ServerReflection, ServerReflectionV1Alpha]);
  return [
    { service: ServerReflection, handlers: { serverReflectionInfo: handler(index, ServerReflectionResponseSchema) } },
    { service: ServerReflectionV1Alpha, handlers: { serverReflectionInfo: handler(index, ServerReflectionResponseSchemaV1Alpha) } },
  ];
}

function handler(index: DescriptorIndex, responseSchema: DescMessage): BidiStreamHandler<ReflectionRequest> {
  return async function* (requests) {
    for await (const request of requests) {
      // The v1 init shape fits v1alpha's schema field for field.
      yield create(responseSchema, answer(index, request) as never);
    }
  };
}

function answer(index: DescriptorIndex, request: ReflectionRequest): ResponseInit {
  const reply = (messageResponse: ResponseInit["messageResponse"]): ResponseInit => ({
    validHost: request.host,
    originalRequest: request as ResponseInit["originalRequest"],
    messageResponse,
  });
  const files = (found: Uint8Array[] | undefined, what: string) =>
    reply(found ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: found } } : error(Code.NotFound, `${what} not found`));
  const { messageRequest: m } = request;
  switch (m.case) {
    case "listServices":
      return reply({ case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } });
    case "fileByFilename":
      return files(index.fileByPath(m.value), `file "${clip(m.value)}"`);
    case "fileContainingSymbol":
      return files(index.fileContainingSymbol(m.value), `symbol "${clip(m.value)}"`);
    case "fileContainingExtension":
      return files(
        index.fileContainingExtension(m.value.containingType, m.value.extensionNumber),
        `extension ${m.value.extensionNumber} of "${clip(m.value.containingType)}"`,
      );
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbersOf(m.value);
      if (!numbers) return reply(error(Code.NotFound, `message type "${clip(m.value)}" not found`));
      return reply({ case: "allExtensionNumbersResponse", value: { baseTypeName: m.value, extensionNumber: numbers } });
    }
    default:
      return reply(error(Code.InvalidArgument, "the request names no message_request"));
  }
}

const error = (code: Code, message: string): ResponseInit["messageResponse"] => ({
  case: "errorResponse", value: { errorCode: code, errorMessage: message },
});

/** Names from the caller go back in messages, but never at any length. */
const clip = (text: string) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);
