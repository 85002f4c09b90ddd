// A load generator process: keeps `concurrency` calls in flight against the
// authority's gRPC port for a fixed time and prints one JSON line of results.
// Run by bench/authority.ts so the load never shares a process with the server.
import { create } from "@bufbuild/protobuf";
import {
  CreateSessionRequestSchema, CreateSessionResponseSchema, RefreshRequestSchema, RefreshResponseSchema, SessionAuthorityService,
  ValidateTokenRequestSchema, ValidateTokenResponseSchema,
} from "../src/gen/sessionauthority/v1/authority_pb.js";
import { FramedGrpcClient } from "./framed-grpc-client.js";

interface Job {
  target: string;
  /** Where sessions are created for refresh/validate (default: target); a sidecar cannot create them. */
  seedTarget?: string;
  rpc: "createSession" | "refresh" | "validateToken";
  concurrency: number;
  durationMs: number;
  /** Calls made before the measured `durationMs` and not counted (default 1 s), as h2load's --warm-up-time. */
  warmupMs?: number;
  apiKey: string;
}

const job = JSON.parse(process.env.BENCH_JOB!) as Job;
// Several HTTP/2 connections, as a fleet of callers would have.
const clients = Array.from({ length: 4 }, () => new FramedGrpcClient(job.target));
const auth = { authorization: `ApiKey ${job.apiKey}` };
const path = (method: string) => `/${SessionAuthorityService.typeName}/${method}`;
const UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
let counter = 0;

function createSession(client: FramedGrpcClient) {
  const n = counter++;
  return client.call(
    path("CreateSession"), CreateSessionRequestSchema, CreateSessionResponseSchema,
    create(CreateSessionRequestSchema, {
      userId: `user-${process.pid}-${n}`, username: `User ${n}`, roles: ["user", "beta"], permissions: ["orders:read", "orders:write"],
      device: { id: `device-${n}`, name: "Chrome on Windows" }, userAgent: UA, ipAddress: "203.0.113.7",
    }),
    auth,
  );
}

async function main() {
  const latencies: number[] = [];
  let errors = 0;
  let firstError = "";
  const workers: (() => Promise<void>)[] = [];

  // Per-worker state set up before the clock starts.
  const seeder = job.seedTarget ? new FramedGrpcClient(job.seedTarget) : undefined;
  const seeds = job.rpc === "createSession" ? [] : await Promise.all(Array.from({ length: job.concurrency }, (_, i) => createSession(seeder ?? clients[i % 4]!)));
  seeder?.close();
  // Start the measured load with this process's start-up garbage gone (run with
  // --expose-gc): its first full GC otherwise fell inside the measured seconds and
  // its pause into every latency then in flight.
  (globalThis as { gc?: () => void }).gc?.();

  for (let i = 0; i < job.concurrency; i++) {
    const client = clients[i % 4]!;
    let refreshToken = seeds[i]?.tokens?.refreshToken ?? "";
    const accessToken = seeds[i]?.tokens?.accessToken ?? "";
    const once =
      job.rpc === "createSession" ? () => createSession(client).then(() => undefined)
      : job.rpc === "refresh"
        ? () =>
            client.call(path("Refresh"), RefreshRequestSchema, RefreshResponseSchema, create(RefreshRequestSchema, { refreshToken })).then((r) => {
              refreshToken = r.tokens!.refreshToken;
            })
        : () =>
            client.call(path("ValidateToken"), ValidateTokenRequestSchema, ValidateTokenResponseSchema, create(ValidateTokenRequestSchema, { accessToken })).then((r) => {
              if (!r.valid) throw new Error(`token invalid: ${r.reason}`);
            });
    workers.push(async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        try {
          await once();
          if (start >= measureFrom) latencies.push(performance.now() - start);
        } catch (e) {
          errors++; // counted during the warm-up too: a failure is never excused
          firstError ||= (e as Error).message;
        }
      }
    });
  }
  // Both this process and a server that has not yet run these calls start cold
  // (JIT, connection windows); the h2load rows skip that too (--warm-up-time 1).
  const measureFrom = performance.now() + (job.warmupMs ?? 1000);
  const deadline = measureFrom + job.durationMs;
  await Promise.all(workers.map((w) => w()));
  const seconds = (performance.now() - measureFrom) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  process.stdout.write(
    JSON.stringify({ rpc: job.rpc, calls: latencies.length, errors, firstError, seconds, rate: latencies.length / seconds, p50: pct(0.5), p99: pct(0.99) }) + "\n",
  );
  for (const c of clients) c.close();
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
