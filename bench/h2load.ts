// h2load, nghttp2's HTTP/2 load generator, for the rows that compare servers on the
// very same calls: what it needs, the gRPC request body it sends, what it reports.
import { execFile, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";

const run = promisify(execFile);

/** Fails at once, saying what to install, rather than after the other rows have run. */
export function requireH2load(): void {
  if (spawnSync("h2load", ["--version"]).status === 0) return;
  throw new Error("h2load is not installed; it is in nghttp2's client tools:\n  Debian/Ubuntu: apt-get install nghttp2-client\n  macOS: brew install nghttp2");
}

/** A file holding one length-prefixed gRPC message, for h2load's -d. */
export function grpcRequestFile<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): string {
  const message = toBinary(schema, create(schema, init));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  const path = join(tmpdir(), `bench-${process.pid}-${schema.name}.bin`);
  writeFileSync(path, frame);
  return path;
}

/** Runs h2load; its request rate and mean time per request (ms). Any failed request is an error. */
export async function h2load(args: string[]): Promise<{ rate: number; meanMs: number }> {
  const { stdout } = await run("h2load", args, { maxBuffer: 1 << 20 });
  const done = /finished in [\d.]+s, ([\d.]+) req\/s/.exec(stdout);
  const failed = /requests: .* (\d+) failed/.exec(stdout);
  const mean = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(stdout);
  if (!done || !mean) throw new Error(`h2load printed no rate:\n${stdout}`);
  if (failed && Number(failed[1]) > 0) throw new Error(`h2load saw failures:\n${stdout}`);
  return { rate: Number(done[1]), meanMs: Number(mean[1]) * (mean[2] === "us" ? 0.001 : mean[2] === "s" ? 1000 : 1) };
}
