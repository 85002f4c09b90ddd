// Runs bench/load-generator.ts in a process of its own and returns the one JSON
// line it reports. Shared by bench:authority and bench:verify.
import { spawn, type ChildProcess } from "node:child_process";

export interface LoadResult {
  rpc: string;
  calls: number;
  errors: number;
  firstError: string;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
}

// The load generator's own GC pauses land in the latencies it measures: a young
// generation at full size from the start (no growth pauses mid-run) and
// --expose-gc, so it clears its start-up garbage before the load begins.
const NODE_ARGS = ["--expose-gc", "--min-semi-space-size=16", "--import", "tsx"];

export function runLoadGenerator(job: object): Promise<LoadResult> {
  const child = spawn(process.execPath, [...NODE_ARGS, "bench/load-generator.ts"], {
    env: { ...process.env, BENCH_JOB: JSON.stringify(job) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return firstJsonLine<LoadResult>(child);
}

/** The first line of a child's stdout that starts with "{", parsed. */
export function firstJsonLine<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const line = buf.split("\n").find((l) => l.startsWith("{"));
      if (line) resolve(JSON.parse(line) as T);
    });
    child.once("exit", (code) => reject(new Error(`${child.spawnargs.join(" ")} exited with ${code} before reporting`)));
  });
}
