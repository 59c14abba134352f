// Copy the pinned browser dependencies from node_modules into vendor/ as plain ES modules the
// pages load under the relay's CSP (script-src 'self', no import map): each package's esm/
// JavaScript files and its licence, with the one bare specifier between them ("@hpke/common"
// inside @hpke/core) rewritten to a relative path; and each package that ships only a browser
// bundle (tus-js-client's browserify UMD build) as one ES module whose named exports are the
// bundle's, with its licence and those of the packages it depends on. Run by `npm ci`
// (postinstall) and `npm run vendor`; it refuses to run unless node_modules holds exactly the
// versions that package-lock.json pins, and fails if any other bare specifier would remain.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { runInNewContext } from "node:vm";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const TARGET = join(ROOT, "vendor");
const PACKAGES = ["@hpke/common", "@hpke/core"];
// UMD bundle to ES module: vendor/<name>/<module> is <bundle> with `module` and `exports` in
// scope, so the UMD wrapper takes its CommonJS branch instead of setting a global.
const BUNDLES = [{ name: "tus-js-client", bundle: "dist/tus.js", module: "tus.js" }];
const LICENSE_FILE = /^licen[cs]e(\.md|\.txt)?$/i;
// Static import and export statements as dnt emits them, each starting a line (code in doc
// comments starts with " * " and is left alone).
const STATIC_IMPORT = /^((?:import|export)\b[^\n]*?\bfrom\s*|\}\s*from\s*|import\s*)"([^"]+)"/gm;

function lockedEntry(name) {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  const entry = lock.packages[`node_modules/${name}`];
  if (!entry) throw new Error(`package-lock.json does not pin ${name}`);
  return entry;
}

// node_modules/<name>, after checking it holds the version package-lock.json pins.
function installed(name) {
  const source = join(ROOT, "node_modules", name);
  const version = JSON.parse(readFileSync(join(source, "package.json"), "utf8")).version;
  const locked = lockedEntry(name).version;
  if (version !== locked) {
    throw new Error(`node_modules holds ${name} ${version}, package-lock.json pins ${locked}: run npm ci`);
  }
  return { source, version };
}

// The packages ``name`` depends on, directly or not, as package-lock.json lists them.
function dependencies(name, found = new Set()) {
  for (const dependency of Object.keys(lockedEntry(name).dependencies ?? {})) {
    if (!found.has(dependency)) {
      found.add(dependency);
      dependencies(dependency, found);
    }
  }
  return found;
}

function copyLicense(source, target) {
  const file = readdirSync(source).find((entry) => LICENSE_FILE.test(entry));
  if (file) cpSync(join(source, file), target);
  return Boolean(file);
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

function bundleAsModule(name, version, bundle, source) {
  const module = { exports: {} };
  runInNewContext(source, { module, exports: module.exports });
  const names = Object.keys(module.exports).filter((key) => /^[A-Za-z_$][\w$]*$/.test(key)).sort();
  if (names.length === 0) throw new Error(`${name}/${bundle} exports nothing through module.exports`);
  const body = source.replace(/^\/\/# sourceMappingURL=.*$/m, "");
  return `// ${name} ${version} ${bundle}, wrapped as an ES module by tools/vendor.mjs.\n` +
    "const module = { exports: {} };\nconst exports = module.exports;\n" + body +
    `\nexport const { ${names.join(", ")} } = module.exports;\nexport default module.exports;\n`;
}

rmSync(TARGET, { recursive: true, force: true });
for (const name of PACKAGES) {
  const { source, version } = installed(name);
  const destination = join(TARGET, name);
  for (const file of javascriptFiles(join(source, "esm"))) {
    const target = join(destination, relative(source, file));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, rewrite(readFileSync(file, "utf8"), target));
  }
  if (existsSync(join(source, "LICENSE"))) cpSync(join(source, "LICENSE"), join(destination, "LICENSE"));
  writeFileSync(join(destination, "VERSION"), `${name} ${version}\n`);
}
for (const { name, bundle, module } of BUNDLES) {
  const { source, version } = installed(name);
  const destination = join(TARGET, name);
  mkdirSync(join(destination, "licenses"), { recursive: true });
  const code = readFileSync(join(source, bundle), "utf8");
  writeFileSync(join(destination, module), bundleAsModule(name, version, bundle, code));
  if (!copyLicense(source, join(destination, "LICENSE"))) throw new Error(`${name} has no licence file`);
  for (const dependency of dependencies(name)) {
    copyLicense(installed(dependency).source, join(destination, "licenses", dependency.replace("/", "__")));
  }
  writeFileSync(join(destination, "VERSION"), `${name} ${version}\n`);
}
const vendored = [...PACKAGES, ...BUNDLES.map(({ name }) => name)];
console.log(`vendored ${vendored.join(", ")} into ${relative(process.cwd(), TARGET) || "."}`);
