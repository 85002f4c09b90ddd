// Shared plumbing for the real redis-server / nats-server test helpers:
// spawn, wait-until-ready, stop/kill/restart, and making sure no server
// outlives the test process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';

export interface ServerProcess {
  port: number;
  url: string;
  /** Data directory handed to the server (kept across restart()). */
  dir: string;
  /** SIGTERM, then wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL, then wait for exit. */
  kill(): Promise<void>;
  /** Start again on the same port and dir (stops a running instance first). */
  restart(): Promise<void>;
  /** SIGSTOP: the server holds its connections but answers nothing (a hung server). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export interface ServerSpec {
  bin: string;
  args(port: number, dir: string): string[];
  url(port: number): string;
  /** One readiness probe; resolves true once the server answers. */
  probe(port: number): Promise<boolean>;
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

function reap(): void {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

// Vitest stops fork workers with SIGTERM, which skips 'exit' handlers, so the
// signals need their own handler. Guarded so re-evaluating this module (e.g.
// isolate mode sharing a process) does not stack handlers.
const GUARD = Symbol.for('session-authority.test.server-reaper');
const g = globalThis as { [GUARD]?: boolean };
if (!g[GUARD]) {
  g[GUARD] = true;
  process.on('exit', reap);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      reap();
      process.kill(process.pid, sig); // handler was `once`: this re-raise uses the default action
    });
  }
}

/** Kills `child` with the other test servers if the test process ends first. */
export function killOnExit(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function launch(spec: ServerSpec, port: number, dir: string, timeoutMs = 15_000): Promise<ChildProcess> {
  const child = spawn(spec.bin, spec.args(port, dir), { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let log = '';
  const keep = (b: Buffer) => { log = (log + b.toString()).slice(-4000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let spawnError: Error | undefined;
  child.once('error', (e) => { spawnError = e; });

  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) break;
    if (await spec.probe(port)) return child;
    await sleep(50);
  }
  child.kill('SIGKILL');
  await waitExit(child);
  const why = spawnError ? spawnError.message
    : child.exitCode !== null || child.signalCode !== null ? `exited (${child.exitCode ?? child.signalCode})`
    : `not ready after ${timeoutMs}ms`;
  throw new Error(`${spec.bin} on port ${port} ${why}\n${log}`);
}

export async function startServer(spec: ServerSpec, dir: string, fixedPort?: number): Promise<ServerProcess> {
  let port = fixedPort ?? (await freePort());
  let child: ChildProcess;
  // A port from freePort() can be taken by someone else before the server
  // binds it; retry a couple of times with a new one in that case.
  for (let attempt = 1; ; attempt++) {
    try {
      child = await launch(spec, port, dir);
      break;
    } catch (e) {
      if (fixedPort !== undefined || attempt >= 3) throw e;
      port = await freePort();
    }
  }

  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const escalate = sig === 'SIGKILL' ? undefined : setTimeout(() => c.kill('SIGKILL'), 10_000);
    c.kill(sig);
    await waitExit(c);
    clearTimeout(escalate);
  };

  return {
    port,
    url: spec.url(port),
    dir,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGTERM');
      child = await launch(spec, port, dir);
    },
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
  };
}
