#!/usr/bin/env node
// The compiled build (npm run build) when present; otherwise the TypeScript
// sources through tsx, so a checkout works without a build step.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/cli/main.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
