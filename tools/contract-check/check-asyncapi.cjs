#!/usr/bin/env node
// Validates an AsyncAPI document with the official parser (@asyncapi/parser 3.x).
// Usage: node check-asyncapi.cjs [file]   (default: docs/asyncapi.json of this repository)
// Prints every error-severity diagnostic as "<JSON pointer>: <message> [<code>]" and exits 1 when there is
// any; exits 2 when the file cannot be read or the parser cannot run; 0 otherwise (warnings are counted only).
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

function pointer(parts) {
  if (!parts || parts.length === 0) return "/";
  return parts.map((p) => "/" + String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

async function main() {
  const file = path.resolve(process.argv[2] || path.join(__dirname, "..", "..", "docs", "asyncapi.json"));
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    console.error(`cannot read ${file}: ${err.message}`);
    return 2;
  }
  const diagnostics = await new Parser().validate(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning);
  for (const d of errors) {
    console.log(`error ${pointer(d.path)}: ${d.message} [${d.code}]`);
  }
  const summary = `${path.relative(process.cwd(), file) || file}: ${errors.length} error(s), ${warnings.length} warning(s)`;
  if (errors.length) {
    console.error(summary);
    return 1;
  }
  console.log(summary);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`the AsyncAPI parser failed: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 2;
  },
);
