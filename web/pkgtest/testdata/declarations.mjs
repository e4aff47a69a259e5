// Reads crease-client.d.ts with the TypeScript compiler and crease-client.js both as a
// module (its runtime exports) and, with the modules beside it, as syntax (the options connect destructures, the
// events it keeps listeners for, the client object's members, MatchStream's options),
// and prints both sides as JSON for the Go test to compare.
//   node declarations.mjs PACKAGE_DIR TOOLS_DIR
import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, toolsDir] = process.argv.slice(2);
const ts = createRequire(join(toolsDir, "package.json"))("typescript");
const dtsPath = join(pkgDir, "crease-client.d.ts");
const jsPath = join(pkgDir, "crease-client.js");

// --- declared
const program = ts.createProgram([dtsPath], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022 });
const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
const checker = program.getTypeChecker();
const exportsOf = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(dtsPath)));
const sym = (name) => exportsOf.find((s) => s.name === name);
const members = (name) => {
  const s = sym(name);
  return s ? checker.getDeclaredTypeOfSymbol(s).getProperties().map((p) => p.name).sort() : null;
};
const shape = (name) => {
  const s = sym(name);
  if (!s) return null;
  return checker.getDeclaredTypeOfSymbol(s).getProperties().map((p) => p.name + (p.flags & ts.SymbolFlags.Optional ? "?" : "")).sort();
};
const shapes = Object.fromEntries(
  [
    "MatchState", "Score", "Need", "Partnership", "InningsCard", "Extras", "BatterCard", "BowlerCard", "FallOfWicket",
    "HelloFrame", "SubscribedFrame", "DeltaFrame", "ResyncFrame", "ReconnectFrame", "ErrorFrame",
    "SubscribeOp", "UnsubscribeOp", "AuthOp", "StreamPosition", "Snapshot", "MatchSummary",
  ].map((n) => [n, shape(n)]),
);
// The string literals of a union type alias (a member like `string & {}` is left out).
const literals = (name) => {
  const s = sym(name);
  if (!s) return null;
  const t = checker.getDeclaredTypeOfSymbol(s);
  return (t.isUnion() ? t.types : [t]).filter((m) => m.isStringLiteral()).map((m) => m.value).sort();
};
const unions = Object.fromEntries(["ResyncReason", "DeltaPriority", "ErrorCode", "MatchStatus"].map((n) => [n, literals(n)]));
const declared = {
  values: exportsOf.filter((s) => s.flags & ts.SymbolFlags.Value).map((s) => `${s.name}:${s.flags & ts.SymbolFlags.Class ? "class" : "function"}`).sort(),
  options: members("ConnectOptions"),
  events: members("ClientEvents"),
  client: members("Client"),
  streamOptions: members("MatchStreamOptions"),
};

// --- implemented
const mod = await import(pathToFileURL(jsPath).href);
const values = Object.keys(mod).map((k) => `${k}:${/^class\b/.test(Function.prototype.toString.call(mod[k])) ? "class" : typeof mod[k]}`).sort();
const found = { options: new Set(), events: new Set(), client: new Set(), streamOptions: new Set() };
const names = (pattern, into) => {
  for (const el of pattern.elements) into.add((el.propertyName ?? el.name).getText());
};
function visit(node, fn) {
  const inConnect = fn === "connect";
  if (ts.isFunctionDeclaration(node) && node.name) fn = node.name.text;
  if (ts.isConstructorDeclaration(node) && ts.isClassDeclaration(node.parent) && node.parent.name?.text === "MatchStream") {
    const opts = node.parameters[1];
    if (opts && ts.isObjectBindingPattern(opts.name)) names(opts.name, found.streamOptions);
  }
  if (inConnect && ts.isVariableDeclaration(node)) {
    if (ts.isObjectBindingPattern(node.name) && node.initializer && ts.isIdentifier(node.initializer) && node.initializer.text === "options") {
      names(node.name, found.options);
    }
    if (ts.isIdentifier(node.name) && node.initializer && ts.isObjectLiteralExpression(node.initializer)) {
      const into = node.name.text === "listeners" ? found.events : node.name.text === "client" ? found.client : null;
      if (into) for (const p of node.initializer.properties) into.add(p.name.getText());
    }
  }
  ts.forEachChild(node, (c) => visit(c, fn));
}
// crease-client.js is the entry; connect and MatchStream may live in the modules it imports.
for (const name of readdirSync(pkgDir).filter((n) => n.endsWith(".js"))) {
  const path = join(pkgDir, name);
  visit(ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.ES2022, true), "");
}
const implemented = Object.fromEntries(Object.entries(found).map(([k, v]) => [k, [...v].sort()]));
implemented.values = values;
console.log(JSON.stringify({ diagnostics: diags, declared, implemented, shapes, unions }));
