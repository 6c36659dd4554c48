// One place that knows how d.js is bundled; used by build.mjs and size.mjs.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const defaultOutput = join(root, "..", "src", "datafly", "gateway", "static", "d.js");
export const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;

/**
 * Bundle src/index.js into one IIFE for the browser.
 * @param {{minify: boolean}} options
 * @returns {Promise<string>}
 */
export async function bundle({ minify }) {
  const result = await build({
    entryPoints: [join(root, "src", "index.js")],
    bundle: true,
    write: false,
    format: "iife",
    target: ["es2018"],
    platform: "browser",
    minify,
    legalComments: "none",
    charset: "utf8",
    define: { __VERSION__: JSON.stringify(version) },
    banner: {
      js: `/*! Datafly.js ${version} | Apache-2.0 | built from collector/src by \`npm run build\`, do not edit */`,
    },
    logLevel: "silent",
  });
  return result.outputFiles[0].text;
}
