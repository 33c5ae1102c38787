#!/usr/bin/env node
// @ts-check
/**
 * The compiled build: every runtime source file transpiled to dist/ with the same layout (dist/bin,
 * dist/lib, ...), and every file that is not TypeScript or documentation (schema/*.graphql, the
 * explorer's page, ...) copied beside it, so code that finds a file next to itself
 * (`new URL('./x.graphql', import.meta.url)`) finds it in dist/ too. `npm start` and the image run
 * dist/bin/mariner.js; tsx is for development only (`npm run dev`, the tests).
 *
 * Transpiled file by file with esbuild, the transpiler tsx uses, so dist/ runs exactly what tsx runs
 * (tsconfig's isolatedModules makes a file-by-file transpile safe). It does not typecheck: `npm test`
 * (`npm run check`) and the image's build stage do.
 *
 * The entry, dist/bin/mariner.js, is then replaced by a bundle of the same program (with its lazily
 * imported parts as chunks beside it, dist/bin/mariner.chunk-*.js): Node resolves, reads and links
 * about 2,000 module files at every start otherwise, most of them @apollo/gateway's dependencies, which
 * cost more than half a second of CPU. The bundle leaves out the packages in EXTERNAL (loaded from
 * node_modules as before), and every `import.meta.url` of a source file still names that file's place in
 * dist/, so what a module finds next to itself (a schema file, a child process's script) is found as
 * before. The build fails when a bundled package refers to its own location (`__dirname`,
 * `import.meta.url`, ...) and is not in EXTERNAL or LOCATION_FREE: it would look in the wrong place.
 *
 *   node scripts/build.mjs          build when a source changed since the last build (what npm start does)
 *   node scripts/build.mjs --force  build anyway
 *   node scripts/build.mjs --check  exit 1 when dist/ is out of date, without building
 *
 * "Changed" is a fingerprint of every input's path, size and mtime (and of this script and
 * tsconfig.json), kept in dist/.build.json: a few milliseconds to check.
 */
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The folders the runtime is made of (what the image used to copy as sources). */
export const SOURCE_DIRS = ['bin', 'lib', 'schema', 'subgraphs', 'gateway', 'rest-compat', 'agent'];
const OUT_DIR = 'dist';
const STAMP = '.build.json';
/** Not part of the runtime: tests, type declarations, documentation. */
const LEFT_OUT = [/\.test\.ts$/, /\.d\.ts$/, /\.md$/];
/** The oldest Node that may run the build (bin/checkNodeVersion.ts refuses anything older). */
const TARGET = 'node20.19';
const ENTRY = 'bin/mariner.js';
/**
 * Left out of the bundle: packages that find files next to themselves (WebAssembly, native addons,
 * .proto files), optional drivers that are not installed, and the heavy ones only some paths import.
 */
const EXTERNAL = [
  '@electric-sql/*',
  'node-llama-cpp',
  '@zilliz/milvus2-sdk-node',
  'pdfjs-dist',
  'bufferutil',
  'utf-8-validate',
  // pino's transports run in worker threads, from files beside it
  'pino',
  'thread-stream',
  '@kubernetes/client-node',
  '@aws-sdk/*',
  'esbuild',
  'tsx',
  // knex's and pg's optional drivers
  'better-sqlite3',
  'sqlite3',
  'mysql',
  'mysql2',
  'mariadb',
  'oracledb',
  'tedious',
  'pg-query-stream',
  'pg-native',
];
/**
 * Bundled packages whose references to their own location are on paths Mariner never takes (reviewed):
 * knex's migration stubs (its CLI's `migrate:make`); @graphql-tools/merge names `__dirname` in a doc comment only;
 * commander (the command line, bin/cli/) names `__filename`/`__dirname` in doc comments only (its executable
 * subcommands, which bin/cli/ does not use); @colors/colors (cli-table3's) in an error message's text only.
 */
const LOCATION_FREE = ['knex', '@graphql-tools/merge', 'commander', '@colors/colors'];
const LOCATION = /\b__dirname\b|\b__filename\b|\bimport\.meta\.(url|dirname|filename)\b|\brequire\.resolve\(/;

/** The package a node_modules path belongs to (`@scope/name` or `name`). */
function packageOf(/** @type {string} */ file) {
  const match = /node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(file.slice(file.lastIndexOf('node_modules')));
  return match ? match[1].replace(/\\/g, '/') : undefined;
}

/**
 * Bundles the entry into outDir/bin (the entry, and chunks beside it). In a source file,
 * `import.meta.url` becomes the URL of the file-by-file build's copy of it (every chunk is in bin/, so
 * one relative path serves).
 * @param {string} root
 * @param {string} outDir
 */
async function bundleEntry(root, outDir) {
  const { build: esbuild } = await import('esbuild');
  /** @type {Set<string>} */
  const locating = new Set();
  /** @type {import('esbuild').Plugin} */
  const plugin = {
    name: 'mariner-locations',
    setup(build) {
      // The bundle's entry: bin/checkNodeVersion.ts first and alone (it must run before any other module
      // is evaluated, as bin/mariner.ts's first import does unbundled), then the program. On Node 22.1+,
      // V8's compiled code is kept between starts (Node's compile cache: NODE_COMPILE_CACHE, else a folder
      // in the OS's temp dir), so a start after the first skips most of the parsing and compiling; where
      // it cannot be written, Node runs without it.
      build.onResolve({ filter: /^mariner:entry$/ }, () => ({ path: 'entry', namespace: 'mariner' }));
      build.onLoad({ filter: /.*/, namespace: 'mariner' }, () => ({
        contents: [
          existsSync(path.join(root, 'bin/checkNodeVersion.ts')) ? "import './checkNodeVersion.ts';" : '',
          // (not a named import: Node 20's node:module has no such export, and would refuse to link)
          "import nodeModule from 'node:module';",
          'nodeModule.enableCompileCache?.();',
          "await import('./mariner.ts');",
          '',
        ].join('\n'),
        resolveDir: path.join(root, 'bin'),
        loader: 'js',
      }));
      build.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
        const relative = path.relative(root, args.path).replace(/\.ts$/, '.js');
        const own = path.posix.relative('bin', relative.split(path.sep).join('/'));
        const url = `new URL(${JSON.stringify(own.startsWith('.') ? own : `./${own}`)}, import.meta.url).href`;
        return { contents: readFileSync(args.path, 'utf8').replace(/\bimport\.meta\.url\b/g, url), loader: 'ts' };
      });
      build.onLoad({ filter: /[\\/]node_modules[\\/].*\.(c|m)?js$/ }, (args) => {
        const name = packageOf(args.path);
        if (name && !LOCATION_FREE.includes(name) && LOCATION.test(readFileSync(args.path, 'utf8'))) locating.add(name);
        return undefined;
      });
    },
  };
  await esbuild({
    absWorkingDir: root,
    entryPoints: { mariner: 'mariner:entry' },
    outdir: path.join(outDir, 'bin'),
    chunkNames: 'mariner.chunk-[hash]',
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: TARGET,
    tsconfig: path.join(root, 'tsconfig.json'),
    external: EXTERNAL,
    // Bundled CommonJS modules require Node's own modules (and the external packages) through this.
    banner: { js: "import { createRequire as __marinerCreateRequire } from 'node:module';\nconst require = __marinerCreateRequire(import.meta.url);" },
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'warning',
    plugins: [plugin],
  });
  if (locating.size) {
    throw new Error(
      `bundled packages that look for files next to themselves: ${[...locating].sort().join(', ')} (add each to EXTERNAL, or to LOCATION_FREE once checked that Mariner never takes that path)`,
    );
  }
}

/**
 * Every input file under the source folders, relative to the project root, sorted.
 * @param {string} root
 * @returns {string[]}
 */
function inputFiles(root) {
  /** @type {string[]} */
  const files = [];
  /** @param {string} dir */
  const walk = (dir) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const relative = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(relative);
      else if (entry.isFile() && !LEFT_OUT.some((pattern) => pattern.test(entry.name))) files.push(relative);
    }
  };
  for (const dir of SOURCE_DIRS) if (existsSync(path.join(root, dir))) walk(dir);
  return files.sort();
}

/**
 * A fingerprint of the inputs' paths, sizes and mtimes, of tsconfig.json and of this script (how they are built).
 * @param {string} root
 * @param {string[]} files
 */
function fingerprint(root, files) {
  const hash = createHash('sha256');
  for (const file of [...files.map((file) => path.join(root, file)), path.join(root, 'tsconfig.json'), fileURLToPath(import.meta.url)]) {
    const stat = statSync(file);
    hash.update(`${path.relative(root, file)}\t${stat.size}\t${stat.mtimeMs}\n`);
  }
  return hash.digest('hex');
}

/** Whether dist/ was built from the current sources. */
export function isUpToDate(root = ROOT) {
  const stampFile = path.join(root, OUT_DIR, STAMP);
  if (!existsSync(stampFile)) return false;
  try {
    return JSON.parse(readFileSync(stampFile, 'utf8')).fingerprint === fingerprint(root, inputFiles(root));
  } catch {
    return false;
  }
}

/**
 * Builds into a fresh folder beside dist/ and then swaps it in, so an interrupted build never leaves a
 * half-built dist/ that looks current, and two builds at once leave one complete dist/.
 */
export async function build(root = ROOT) {
  const started = Date.now();
  const files = inputFiles(root);
  const print = fingerprint(root, files);
  const { build: esbuild } = await import('esbuild');
  const tag = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const staging = path.join(root, `${OUT_DIR}.${tag}.partial`);
  rmSync(staging, { recursive: true, force: true });
  try {
    const sources = files.filter((file) => file.endsWith('.ts'));
    await esbuild({
      absWorkingDir: root,
      entryPoints: sources,
      outdir: staging,
      outbase: '.',
      bundle: false,
      platform: 'node',
      format: 'esm',
      target: TARGET,
      tsconfig: path.join(root, 'tsconfig.json'),
      // Stack traces name the .ts line when Node runs with --enable-source-maps (npm start does).
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'warning',
    });
    for (const file of files.filter((file) => !file.endsWith('.ts'))) {
      mkdirSync(path.dirname(path.join(staging, file)), { recursive: true });
      copyFileSync(path.join(root, file), path.join(staging, file));
    }
    await bundleEntry(root, staging);
    // The sources' `#!/usr/bin/env -S npx tsx` would run the .ts again: the compiled entry runs on node.
    const entry = path.join(staging, ENTRY);
    writeFileSync(entry, `#!/usr/bin/env node\n${readFileSync(entry, 'utf8').replace(/^#!.*\n/, '')}`);
    chmodSync(entry, 0o755);
    writeFileSync(path.join(staging, STAMP), `${JSON.stringify({ fingerprint: print, builtAt: new Date().toISOString(), files: sources.length }, null, 2)}\n`);
    const out = path.join(root, OUT_DIR);
    const previous = path.join(root, `${OUT_DIR}.${tag}.previous`);
    const code = (/** @type {unknown} */ error) => /** @type {NodeJS.ErrnoException} */ (error).code ?? '';
    try {
      renameSync(out, previous);
    } catch (error) {
      // No dist/ yet, or another build moved it away first.
      if (code(error) !== 'ENOENT') throw error;
    }
    try {
      renameSync(staging, out);
    } catch (error) {
      // Another build swapped its dist/ in first; it is as current as ours.
      if (!['ENOTEMPTY', 'EEXIST'].includes(code(error))) throw error;
    }
    rmSync(previous, { recursive: true, force: true });
    return { files: sources.length, assets: files.length - sources.length, ms: Date.now() - started };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Builds when a source changed since the last build (what `npm start` does). */
export async function buildIfNeeded(root = ROOT) {
  return isUpToDate(root) ? undefined : build(root);
}

/** @param {string[]} args */
async function main(args) {
  const force = args.includes('--force');
  if (args.includes('--check')) {
    const current = isUpToDate();
    process.stderr.write(current ? 'dist/ is up to date\n' : 'dist/ is out of date: run npm run build\n');
    process.exit(current ? 0 : 1);
  }
  const result = force ? await build() : await buildIfNeeded();
  if (result) process.stderr.write(`mariner: compiled ${result.files} files and copied ${result.assets} assets to dist/ in ${result.ms} ms\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error) => {
    process.stderr.write(`mariner: build failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
