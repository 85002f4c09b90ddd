import { connect, type ClientHttp2Session } from "node:http2";
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/**
 * A minimal gRPC client on bare node:http2, for load generation only: it costs
 * a fraction of a full client's CPU, so on a 2-core machine the load generator
 * leaves the server most of the machine. Unary calls, no retries, no deadlines.
 */
export class H2GrpcClient {
  private readonly session: ClientHttp2Session;

  constructor(target: string) {
    this.session = connect(`http://${target}`);
    this.session.on("error", () => {});
  }

  call<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, request: MessageShape<I>, headers: Record<string, string> = {}): Promise<MessageShape<O>> {
    const message = toBinary(input, request);
    const frame = Buffer.allocUnsafe(5 + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    return new Promise((resolve, reject) => {
      const stream = this.session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", reject);
      let status = "";
      let detail = "";
      const take = (h: Record<string, unknown>) => {
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          detail = String(h["grpc-message"] ?? "");
        }
      };
      stream.on("response", take);
      stream.on("trailers", take);
      stream.on("end", () => {
        if (status !== "0") return reject(new Error(`grpc-status ${status}: ${decodeURIComponent(detail)}`));
        const body = Buffer.concat(chunks);
        resolve(fromBinary(output, body.subarray(5, 5 + body.readUInt32BE(1))));
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}
