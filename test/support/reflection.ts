// A gRPC server reflection client on a plain @grpc/grpc-js bidi stream, the
// way grpcurl and other tools use the protocol: many requests on one stream,
// each answered in order.
import * as grpcJs from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import {
  ServerReflectionRequestSchema, ServerReflectionResponseSchema, type ServerReflectionResponse,
} from '../../src/gen/grpc/reflection/v1/reflection_pb.js';

export type ReflectionVersion = 'v1' | 'v1alpha';

export interface ReflectionStream {
  /** Sends one request and resolves with the next response (rejects after timeoutMs or when the call fails). */
  ask(request: MessageInitShape<typeof ServerReflectionRequestSchema>, timeoutMs?: number): Promise<ServerReflectionResponse>;
  /** Half-closes; resolves with the final status. */
  end(): Promise<grpcJs.StatusObject>;
  close(): void;
}

/**
 * Opens ServerReflectionInfo. v1alpha uses the same messages and field numbers
 * as v1 under another package, so the v1 schemas encode and decode both.
 */
export function openReflection(address: string, version: ReflectionVersion, credentials = grpcJs.credentials.createInsecure(), options: grpcJs.ClientOptions = {}): ReflectionStream {
  const client = new grpcJs.Client(address, credentials, options);
  const call = client.makeBidiStreamRequest(
    `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
    (m: MessageInitShape<typeof ServerReflectionRequestSchema>) => Buffer.from(toBinary(ServerReflectionRequestSchema, create(ServerReflectionRequestSchema, m))),
    (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b),
    new grpcJs.Metadata(),
    { deadline: Date.now() + 20_000 },
  );
  const responses: ServerReflectionResponse[] = [];
  let failure: Error | undefined;
  const status = new Promise<grpcJs.StatusObject>((resolve) => call.on('status', resolve));
  call.on('data', (m: ServerReflectionResponse) => responses.push(m));
  call.on('error', (e: Error) => (failure = e));
  let answered = 0;
  return {
    async ask(request, timeoutMs = 5000) {
      call.write(request);
      const deadline = Date.now() + timeoutMs;
      while (responses.length <= answered) {
        if (failure) throw failure;
        if (Date.now() > deadline) throw new Error(`no reflection response within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return responses[answered++]!;
    },
    async end() {
      call.end();
      const s = await status;
      client.close();
      return s;
    },
    close() {
      call.cancel();
      client.close();
    },
  };
}

/** The FileDescriptorProtos of a file_descriptor_response; fails the test if the answer was anything else. */
export function filesOf(response: ServerReflectionResponse): FileDescriptorProto[] {
  const r = response.messageResponse;
  if (r.case !== 'fileDescriptorResponse') throw new Error(`expected file_descriptor_response, got ${r.case}: ${JSON.stringify(r.value)}`);
  return r.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}
