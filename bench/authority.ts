// npm run bench:authority — throughput and latency of the authority on a real
// Redis, load from separate processes, plus the transport comparison and Redis
// memory per session. Prints a Markdown table; BENCHMARKS.md keeps the results.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { hashApiKey } from "../src/authority/caller-auth.js";
import {
  CreateSessionRequestSchema, SessionAuthorityService, ValidateTokenRequestSchema, type CreateSessionResponse,
} from "../src/gen/sessionauthority/v1/authority_pb.js";
import { startRedis } from "../test/support/redis-server.js";
import { GrpcJsClient, withAuthorization } from "./grpc-client.js";
import { memoryPerSession, UA } from "./redis-memory.js";
import { grpcRequestFile, h2load, requireH2load } from "./h2load.js";
import { firstJsonLine, runLoadGenerator, type LoadResult } from "./run-load-generator.js";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONCURRENCY = 64;
const SESSIONS_FOR_MEMORY = Number(process.env.BENCH_MEMORY_SESSIONS ?? 100_000);
/** Which parts to run: BENCH_PHASES=load,transport,memory (default all). */
const PHASES = new Set((process.env.BENCH_PHASES ?? "load,transport,memory").split(","));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  if (PHASES.has("transport")) requireH2load();
  const redis = await startRedis();
  const apiKey = `bench_${randomBytes(16).toString("base64url")}`;
  // BENCH_SERVER_NODE_ARGS="--cpu-prof" profiles the authority under load.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const server = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "bench/transport-server.ts"], {
    env: {
      ...process.env,
      REDIS_URL: redis.url,
      SA_KEY_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
      SA_API_KEYS: JSON.stringify([{ name: "bench", sha256: hashApiKey(apiKey).toString("hex"), scopes: ["sessions:create", "sessions:revoke", "sessions:read"] }]),
      SA_GRPC_PORT: "0",
      SA_HTTP_PORT: "0",
      SA_LOG_LEVEL: "error",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const ports = await firstJsonLine<{ grpc: number; http: number; h2c: number; grpcJs: number }>(server);
    const target = `127.0.0.1:${ports.grpc}`;
    console.log(`# bench:authority  ${new Date().toISOString()}  node ${process.version}  runs=${RUNS} × ${SECONDS}s`);

    const rows: string[] = [];
    // Each call at 64 in flight, and Refresh also at 16: below saturation, latency is service time, not queueing.
    const jobs = (process.env.BENCH_RPCS ?? "createSession@64,refresh@64,refresh@16,validateToken@64").split(",").map((j) => {
      const [rpc, inFlight] = j.split("@");
      return { rpc: rpc!, concurrency: Number(inFlight ?? CONCURRENCY) };
    });
    for (const { rpc, concurrency } of PHASES.has("load") ? jobs : []) {
      const results: LoadResult[] = [];
      for (let i = 0; i < RUNS; i++) results.push(await runLoadGenerator({ target, rpc, concurrency, durationMs: SECONDS * 1000, apiKey }));
      const errors = results.reduce((n, r) => n + r.errors, 0);
      if (errors) console.log(`  ${rpc}: ${errors} errors, first: ${results.find((r) => r.firstError)?.firstError}`);
      const mid = results.find((r) => r.rate === median(results.map((x) => x.rate)))!;
      rows.push(`| ${rpc} | ${concurrency} | ${Math.round(mid.rate)}/s | ${mid.p50.toFixed(2)} ms | ${mid.p99.toFixed(2)} ms | ${results.map((r) => Math.round(r.rate)).join(", ")} | ${errors} |`);
      console.log(rows.at(-1));
    }

    // Transport comparison: identical ValidateToken calls from h2load, 4 connections × 32 streams.
    const token = await sampleToken(target, apiKey);
    const grpcBody = grpcRequestFile(ValidateTokenRequestSchema, { accessToken: token });
    const jsonBody = join(tmpdir(), `bench-validate-${process.pid}.json`);
    writeFileSync(jsonBody, JSON.stringify({ accessToken: token }));
    const path = `/${SessionAuthorityService.typeName}/ValidateToken`;
    const grpcHeaders = ["-H", "content-type: application/grpc", "-H", "te: trailers"];
    const transports: [string, string[]][] = [
      ["gRPC port: bare node:http2 gRPC server (plaintext default)", ["-c", "4", "-m", "32", "-d", grpcBody, ...grpcHeaders, `http://127.0.0.1:${ports.grpc}${path}`]],
      ["@grpc/grpc-js server, gRPC (used with TLS)", ["-c", "4", "-m", "32", "-d", grpcBody, ...grpcHeaders, `http://127.0.0.1:${ports.grpcJs}${path}`]],
      ["connect-node, gRPC over h2c", ["-c", "4", "-m", "32", "-d", grpcBody, ...grpcHeaders, `http://127.0.0.1:${ports.h2c}${path}`]],
      ["connect-node, Connect JSON over h2c", ["-c", "4", "-m", "32", "-d", jsonBody, "-H", "content-type: application/json", `http://127.0.0.1:${ports.h2c}${path}`]],
      ["connect-node, Connect JSON over HTTP/1.1", ["--h1", "-c", "32", "-m", "1", "-d", jsonBody, "-H", "content-type: application/json", `http://127.0.0.1:${ports.http}${path}`]],
    ];
    const transportRows: string[] = [];
    let baseline = 0;
    for (const [name, args] of PHASES.has("transport") ? transports : []) {
      const rates: number[] = [];
      for (let i = 0; i < RUNS; i++) rates.push((await h2load([...args, "-D", String(SECONDS), "--warm-up-time", "1"])).rate);
      const rate = median(rates);
      baseline ||= rate;
      transportRows.push(`| ${name} | ${Math.round(rate)}/s | ${(rate / baseline).toFixed(2)}× | ${rates.map(Math.round).join(", ")} |`);
      console.log(transportRows.at(-1));
    }

    const memory = PHASES.has("memory") ? await memoryPerSession(SESSIONS_FOR_MEMORY) : [];
    console.log("\n## Authority on Redis (gRPC port; load from a separate process)\n");
    console.log("| call | in flight | throughput (median) | p50 | p99 | runs | errors |\n| --- | --- | --- | --- | --- | --- | --- |");
    console.log(rows.join("\n"));
    console.log("\n## Transport, ValidateToken from h2load (same handlers)\n");
    console.log("| server | throughput (median) | vs gRPC port | runs |\n| --- | --- | --- | --- |");
    console.log(transportRows.join("\n"));
    console.log(`\n## Redis memory per session (${SESSIONS_FOR_MEMORY} sessions)\n`);
    console.log("| shape | bytes per session |\n| --- | --- |");
    for (const [shape, bytes] of memory) console.log(`| ${shape} | ${bytes} |`);
  } finally {
    server.kill("SIGTERM");
    await redis.stop();
  }
}

async function sampleToken(target: string, apiKey: string): Promise<string> {
  const client = new GrpcJsClient(SessionAuthorityService, target);
  const res = (await client.call(
    "createSession",
    create(CreateSessionRequestSchema, { userId: "bench-validate", roles: ["user"], userAgent: UA }),
    withAuthorization(`ApiKey ${apiKey}`),
  )) as CreateSessionResponse;
  const check = (await client.call("validateToken", create(ValidateTokenRequestSchema, { accessToken: res.tokens!.accessToken }))) as unknown as { valid: boolean };
  if (!check.valid) throw new Error("sample token does not validate");
  client.close();
  return res.tokens!.accessToken;
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
