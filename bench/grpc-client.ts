import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/**
 * A plain @grpc/grpc-js client for any protobuf-es service: the canonical gRPC
 * client, carrying the generated types through custom serializers.
 */
export class GrpcJsClient {
  private readonly client: grpc.Client;

  constructor(private readonly service: DescService, target: string, options: grpc.ClientOptions = {}) {
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), options);
  }

  call<I extends DescMessage, O extends DescMessage>(
    method: string,
    request: MessageShape<I>,
    metadata = new grpc.Metadata(),
    deadlineMs = 10_000,
  ): Promise<MessageShape<O>> {
    const m = this.service.methods.find((x) => x.localName === method || x.name === method);
    if (!m) throw new Error(`no method ${method}`);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/${this.service.typeName}/${m.name}`,
        (msg: MessageShape<I>) => Buffer.from(toBinary(m.input, msg as never)),
        (buf: Buffer) => fromBinary(m.output, buf) as MessageShape<O>,
        request,
        metadata,
        { deadline: Date.now() + deadlineMs },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export function withAuthorization(value: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("authorization", value);
  return md;
}
