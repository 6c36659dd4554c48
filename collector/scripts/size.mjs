// npm run size [-- --json]: raw (bundled, unminified), minified and gzipped sizes; fails above the budget.
import { gzipSync } from "node:zlib";
import { bundle } from "./bundle.mjs";

export const GZIP_BUDGET = 5120; // 5 KB, the bound (the product promises under 8 KB)

const raw = Buffer.byteLength(await bundle({ minify: false }));
const minified = Buffer.from(await bundle({ minify: true }));
const gzip = gzipSync(minified, { level: 9 }).length;
const sizes = { raw, min: minified.length, gzip, budget: GZIP_BUDGET };
if (process.argv.includes("--json")) console.log(JSON.stringify(sizes));
else console.log(`d.js raw ${raw} B, minified ${minified.length} B, gzipped ${gzip} B (budget ${GZIP_BUDGET} B)`);
if (gzip > GZIP_BUDGET) {
  console.error(`d.js is ${gzip} B gzipped, over the ${GZIP_BUDGET} B budget`);
  process.exit(1);
}
