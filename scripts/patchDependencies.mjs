#!/usr/bin/env node
// @ts-check
/**
 * Fixes, in node_modules, what an installed dependency gets wrong on the Node versions Mariner
 * supports, until the dependency is fixed or replaced. Run by `npm ci` / `npm install` (the
 * `postinstall` script) and by the Dockerfile after its `npm ci --ignore-scripts`. Idempotent; a
 * patch whose original text is no longer there fails loudly, so a dependency update is looked at.
 *
 * graphql-shield 7.6.5 (its last release; upstream is unmaintained, maticzav/graphql-shield#1560,
 * #1561) imports `isUndefined` from Node's `util`, which Node 23 removed (DEP0051): on Node 24 its ESM
 * build fails to link, so every subgraph fails at import. The lasting fix is to swap the engine
 * behind schema/rbac's policy map (DESIGN §6 keeps it swappable); this keeps the same code running.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IS_UNDEFINED = '(value) => value === undefined';

/** @type {{ pkg: string, version: string, file: string, from: string, to: string }[]} */
const PATCHES = [
  {
    pkg: 'graphql-shield',
    version: '7.6.5',
    file: 'esm/rules.js',
    from: "import { isUndefined } from 'util';",
    to: `const isUndefined = ${IS_UNDEFINED}; // patched by mariner scripts/patchDependencies.mjs (util.isUndefined is gone in Node 23)`,
  },
  {
    pkg: 'graphql-shield',
    version: '7.6.5',
    file: 'cjs/rules.js',
    from: 'const util_1 = require("util");',
    to: `const util_1 = { isUndefined: ${IS_UNDEFINED} }; // patched by mariner scripts/patchDependencies.mjs (util.isUndefined is gone in Node 23)`,
  },
];

/** Applies the patches under `root` (the project root); returns the files it changed. */
export function patchDependencies(root = ROOT) {
  const changed = [];
  for (const patch of PATCHES) {
    const dir = path.join(root, 'node_modules', patch.pkg);
    // Not installed (or not this version any more): nothing to fix here.
    if (!existsSync(path.join(dir, 'package.json'))) continue;
    const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    if (version !== patch.version) {
      throw new Error(
        `scripts/patchDependencies.mjs: ${patch.pkg} is ${version}, the patch is for ${patch.version}: check whether ${patch.file} still needs it`,
      );
    }
    const file = path.join(dir, patch.file);
    const text = readFileSync(file, 'utf8');
    if (text.includes(patch.to)) continue;
    if (!text.includes(patch.from)) throw new Error(`scripts/patchDependencies.mjs: ${patch.pkg}/${patch.file} no longer has ${JSON.stringify(patch.from)}`);
    writeFileSync(file, text.replace(patch.from, patch.to));
    changed.push(path.relative(root, file));
  }
  return changed;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const file of patchDependencies()) process.stdout.write(`patched ${file}\n`);
}
