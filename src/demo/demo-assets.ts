import { fileURLToPath } from "node:url";
import { DEMO_PAGE_HTML } from "./demo-page.js";

/** What the demo routes serve: the page and its script, the client SDK bundled in. */
export interface DemoAssets {
  html: string;
  script: string;
}

/**
 * Bundles the demo page's script with esbuild, in memory, when the dev server
 * starts: nothing generated is committed, and the page always runs the SDK as it
 * is in this tree. esbuild is a development dependency, so it is loaded only
 * here; without it (an installed package) the demo is unavailable and says why.
 */
export async function buildDemoAssets(): Promise<DemoAssets> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch {
    throw new Error("the demo needs esbuild, a development dependency (npm ci installs it)");
  }
  // The script sits beside this module, as .ts in the source tree (tsx) and as .js once compiled.
  const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(new URL(`./demo-app${extension}`, import.meta.url))],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
    legalComments: "none",
  });
  return { html: DEMO_PAGE_HTML, script: result.outputFiles[0]!.text };
}
