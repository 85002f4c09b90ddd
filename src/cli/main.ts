import { ConfigError, loadConfig, loadSidecarConfig } from "../config/config.js";

// Each command loads only its own modules: a sidecar never loads Redis or the
// authority, which keeps its memory small.
const USAGE = `session-authority <command>

  serve                 run the authority (configuration from the environment)
  dev                   run it for development: in-memory store unless REDIS_URL is set,
                        a generated API key, and an example call printed
  sidecar               run a verifier sidecar beside a service (SA_AUTHORITY_URL, NATS_URL)
  keys rotate           add a new signing key (published now, used after SA_KEY_PUBLISH_DELAY)
  keys new-api-key NAME print a new random API key and its SA_API_KEYS entry
  help                  this text
`;

async function main(argv: string[]): Promise<void> {
  const [command, sub, arg] = argv;
  switch (command) {
    case "serve":
    case "dev":
      return (await import("./serve.js")).serve(loadConfig(process.env, command), command === "dev");
    case "sidecar":
      return (await import("./sidecar.js")).sidecar(loadSidecarConfig());
    case "keys":
      if (sub === "rotate") return (await import("./keys.js")).rotateKeys(loadConfig());
      if (sub === "new-api-key") return (await import("./keys.js")).newApiKey(arg ?? "service");
      break;
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(USAGE);
      return;
  }
  process.stderr.write(`unknown command: ${argv.join(" ")}\n\n${USAGE}`);
  process.exitCode = 2;
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof ConfigError) {
    process.stderr.write(`configuration error: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fatal: ${(e as Error).message}\n`);
  process.exit(1);
});
