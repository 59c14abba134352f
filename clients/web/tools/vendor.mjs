// Copy the pinned browser dependencies from node_modules into vendor/ as plain ES modules the
// pages load under the relay's CSP (script-src 'self', no import map): each package's esm/
// JavaScript files and its licence, with the one bare specifier between them ("@hpke/common"
// inside @hpke/core) rewritten to a relative path. Run by `npm ci` (postinstall) and
// `npm run vendor`; it refuses to run unless node_modules holds exactly the versions that
// package-lock.json pins, and fails if any other bare specifier would remain.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const TARGET = join(ROOT, "vendor");
const PACKAGES = ["@hpke/common", "@hpke/core"];
// Static import and export statements as dnt emits them, each starting a line (code in doc
// comments starts with " * " and is left alone).
const STATIC_IMPORT = /^((?:import|export)\b[^\n]*?\bfrom\s*|\}\s*from\s*|import\s*)"([^"]+)"/gm;

function lockedVersion(name) {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  const entry = lock.packages[`node_modules/${name}`];
  if (!entry) throw new Error(`package-lock.json does not pin ${name}`);
  return entry.version;
}

function javascriptFiles(directory) {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return javascriptFiles(path);
    return entry.name.endsWith(".js") ? [path] : [];
  });
}

function rewrite(source, file) {
  return source.replace(STATIC_IMPORT, (whole, keyword, specifier) => {
    if (specifier.startsWith("./") || specifier.startsWith("../")) return whole;
    if (!PACKAGES.includes(specifier)) {
      throw new Error(`${relative(ROOT, file)} imports "${specifier}", which is not vendored`);
    }
    let path = relative(dirname(file), join(TARGET, specifier, "esm", "mod.js")).split(sep).join("/");
    if (!path.startsWith(".")) path = `./${path}`;
    return `${keyword}"${path}"`;
  });
}

rmSync(TARGET, { recursive: true, force: true });
for (const name of PACKAGES) {
  const source = join(ROOT, "node_modules", name);
  const installed = JSON.parse(readFileSync(join(source, "package.json"), "utf8")).version;
  if (installed !== lockedVersion(name)) {
    const locked = lockedVersion(name);
    throw new Error(`node_modules holds ${name} ${installed}, package-lock.json pins ${locked}: run npm ci`);
  }
  const destination = join(TARGET, name);
  for (const file of javascriptFiles(join(source, "esm"))) {
    const target = join(destination, relative(source, file));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, rewrite(readFileSync(file, "utf8"), target));
  }
  if (existsSync(join(source, "LICENSE"))) cpSync(join(source, "LICENSE"), join(destination, "LICENSE"));
  writeFileSync(join(destination, "VERSION"), `${name} ${installed}\n`);
}
console.log(`vendored ${PACKAGES.join(", ")} into ${relative(process.cwd(), TARGET) || "."}`);
