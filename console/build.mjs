#!/usr/bin/env node
// @ts-check
/**
 * Builds the web console (console/README.md) into console/dist with Vite, when its sources changed
 * since the last build: what `npm start` runs (a few milliseconds when nothing changed) and what the
 * console's end-to-end test and the image's build stage run. The gateway serves console/dist at
 * /console (gateway/console.ts).
 *
 *   node console/build.mjs          build when an input changed
 *   node console/build.mjs --force  build anyway
 *
 * "Changed" is a fingerprint of every input's path, size and mtime (src/, index.html, the Vite config,
 * the lockfile and this script), kept in console/dist/.build.json. Without Vite (an install without the
 * development packages) it says so and builds nothing: the gateway then answers /console with how to
 * build it.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants, gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(HERE);
const OUT = path.join(HERE, 'dist');
const STAMP = path.join(OUT, '.build.json');
/** Held while a build runs: test files run in parallel and each makes sure the console is built. */
const LOCK = path.join(HERE, 'dist.lock');
const STALE_LOCK_MS = 120_000;

/** Runs `fn` holding LOCK (a directory: mkdir is atomic); a lock older than STALE_LOCK_MS is taken over. */
async function withLock(fn) {
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (error) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code !== 'EEXIST') throw error;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true });
      } catch {
        // Released meanwhile.
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** @param {string} dir @returns {string[]} */
function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(path.join(dir, entry.name)) : [path.join(dir, entry.name)]));
}

export function consoleFingerprint() {
  const inputs = [
    ...walk(path.join(HERE, 'src')),
    path.join(HERE, 'index.html'),
    path.join(HERE, 'vite.config.ts'),
    path.join(ROOT, 'package-lock.json'),
    fileURLToPath(import.meta.url),
  ].sort();
  const hash = createHash('sha256');
  for (const file of inputs) {
    const stat = statSync(file);
    hash.update(`${path.relative(ROOT, file)}\t${stat.size}\t${stat.mtimeMs}\n`);
  }
  return hash.digest('hex');
}

export function consoleUpToDate() {
  try {
    return existsSync(path.join(OUT, 'index.html')) && JSON.parse(readFileSync(STAMP, 'utf8')).fingerprint === consoleFingerprint();
  } catch {
    return false;
  }
}

/** Builds console/dist unless it is up to date (or `force`). Returns whether it built. */
export async function buildConsole({ force = false, quiet = false } = {}) {
  if (!force && consoleUpToDate()) return false;
  // Another process may have built it while this one waited for the lock.
  return withLock(() => (!force && consoleUpToDate() ? false : build(quiet)));
}

/** @param {boolean} quiet */
async function build(quiet) {
  const fingerprint = consoleFingerprint();
  let vite;
  try {
    vite = await import('vite');
  } catch {
    console.warn('console: Vite is not installed (npm ci without dev packages?): the web console is not built');
    return false;
  }
  const started = Date.now();
  // A production build whatever the caller's NODE_ENV (vitest sets "test", which would make Vite bundle React's development build).
  const nodeEnv = process.env['NODE_ENV'];
  process.env['NODE_ENV'] = 'production';
  try {
    await vite.build({ configFile: path.join(HERE, 'vite.config.ts'), mode: 'production', logLevel: quiet ? 'warn' : 'info' });
  } finally {
    if (nodeEnv === undefined) delete process.env['NODE_ENV'];
    else process.env['NODE_ENV'] = nodeEnv;
  }
  // Compressed once here, served as they are (Content-Encoding: gzip) to browsers that accept it.
  for (const file of walk(path.join(OUT, 'assets')).filter((f) => /\.(js|css|svg)$/.test(f)))
    writeFileSync(`${file}.gz`, gzipSync(readFileSync(file), { level: constants.Z_BEST_COMPRESSION }));
  writeFileSync(STAMP, JSON.stringify({ fingerprint }));
  if (!quiet) console.log(`console: built into ${path.relative(process.cwd(), OUT) || OUT} in ${Date.now() - started} ms`);
  return true;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildConsole({ force: process.argv.includes('--force'), quiet: process.argv.includes('--quiet') });
}
