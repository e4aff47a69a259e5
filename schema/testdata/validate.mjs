// Validates a corpus with ajv (JSON Schema draft 2020-12, strict mode with union types allowed, formats asserted)
// and prints {"checked": N, "failures": [...]}: an entry that ajv judges otherwise than
// its "valid" flag says is a failure.
//   node validate.mjs SCHEMA_DIR CORPUS.json TOOLS_DIR
import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [schemaDir, corpusPath, toolsDir] = process.argv.slice(2);
const require = createRequire(join(toolsDir, "package.json"));
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
addFormats(ajv);
const validators = {};
for (const name of readdirSync(schemaDir).filter((n) => n.endsWith(".schema.json"))) {
  validators[name] = ajv.compile(JSON.parse(readFileSync(join(schemaDir, name), "utf8")));
}
const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));
const failures = [];
for (const { schema, why, instance, valid } of corpus) {
  const v = validators[schema];
  if (!v) {
    failures.push({ schema, why, error: "no such schema" });
    continue;
  }
  const ok = v(instance);
  if (ok !== valid) failures.push({ schema, why, valid, errors: v.errors && v.errors.slice(0, 3) });
}
console.log(JSON.stringify({ schemas: Object.keys(validators).length, checked: corpus.length, failures }));
