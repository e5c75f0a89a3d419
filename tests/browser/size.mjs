// The size of clients/js/rollcall.js once minified with terser (driven by tests/client_js.rs):
//
//   node tests/browser/size.mjs clients/js/rollcall.js
//
// Prints `minified BYTES gzip BYTES source BYTES` on one line.

import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { minify } from "terser";

const [path] = process.argv.slice(2);
const source = readFileSync(path, "utf8");
const { code } = await minify(source, { module: true, compress: true, mangle: true });
const bytes = Buffer.byteLength(code);
console.log(`minified ${bytes} gzip ${gzipSync(code).length} source ${Buffer.byteLength(source)}`);
