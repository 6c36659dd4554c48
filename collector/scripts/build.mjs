// npm run build [-- --outfile PATH]: write the minified collector (default: the gateway's static/d.js).
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { bundle, defaultOutput } from "./bundle.mjs";

const flag = process.argv.indexOf("--outfile");
const output = flag > 0 ? process.argv[flag + 1] : defaultOutput;
const code = await bundle({ minify: true });
mkdirSync(dirname(output), { recursive: true });
writeFileSync(output, code);
console.log(`wrote ${output} (${Buffer.byteLength(code)} bytes)`);
