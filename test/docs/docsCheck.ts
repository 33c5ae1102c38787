/**
 * Executable documentation (`npm run docs:check`): every shell block of README.md and docs/**\/*.md that
 * is marked runnable is run against a fresh `mariner up --demo-model`, and a block that fails is reported
 * with its file and line, its exit status, its stdout and its stderr.
 *
 * The convention, in markdown (both comments are invisible on GitHub and in the site):
 *
 *     <!-- docs:run -->
 *     <!-- docs:expect "object":"list" -->      (optional: stdout must match this JavaScript regex, flag m)
 *     ```sh
 *     curl -sf -H "Authorization: Bearer $MARINER_API_KEY" "$MARINER_URL/v1/models"
 *     ```
 *
 * Each block runs in bash with `-euo pipefail`, with MARINER_URL (no trailing slash) and MARINER_API_KEY
 * (the bootstrap admin key) in its environment, and must exit 0 within BLOCK_TIMEOUT_MS. The blocks of one
 * page run in order in one fresh directory of their own: a file a block writes is there for the next
 * block; a variable a block exports is not (each block is its own bash). The pages share one server.
 * Node examples may import `openai`: the page's directory has a `node_modules` link to the repository's.
 * `mariner` is on PATH: the repository's compiled build (dist/, built first when a source changed).
 *
 * Run: `npm run docs:check` (README.md and docs/), `npm run docs:check -- docs/quick-start.md` (some
 * pages), `npm run docs:check -- --url http://127.0.0.1:8080` (a server already running; its key in
 * MARINER_API_KEY). test/docsExamples.test.ts runs it in `npm test`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildIfNeeded } from '../../scripts/build.mjs';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Longest a block may run (a fine-tuning job on the demo trainer takes a few seconds; a runtime starts in one or two). */
export const BLOCK_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 90_000;
const SHELLS = new Set(['sh', 'bash', 'shell']);
const RUN_MARKER = /^\s*<!--\s*docs:run\s*-->\s*$/;
const EXPECT_MARKER = /^\s*<!--\s*docs:expect\s+(.*?)\s*-->\s*$/;
const FAILED_AT = '__docs_check_failed_at__';
const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/;

/** One runnable example. */
export interface DocBlock {
  /** Path relative to the repository root (or as given), and the 1-based line of the block's first code line. */
  file: string;
  line: number;
  code: string;
  /** The `docs:expect` regex, as written. */
  expect: string | undefined;
}

export interface BlockResult {
  block: DocBlock;
  ok: boolean;
  /** Why it failed: exit status, timeout, or an unmatched expectation. */
  reason: string | undefined;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A marker that is not followed by a shell block is a mistake in the page: reported, never skipped. */
export class DocsSyntaxError extends Error {
  override name = 'DocsSyntaxError';
}

/** The runnable blocks of one markdown text. */
export function extractBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const blocks: DocBlock[] = [];
  let inFence: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const fence = FENCE.exec(lines[i]!);
    if (inFence !== undefined) {
      if (fence && fence[2]!.startsWith(inFence) && lines[i]!.trim() === fence[2]) inFence = undefined;
      continue;
    }
    if (fence) {
      inFence = fence[2]!;
      continue;
    }
    if (!RUN_MARKER.test(lines[i]!)) continue;
    const markerLine = i + 1;
    let expect: string | undefined;
    let j = i + 1;
    while (j < lines.length && lines[j]!.trim() === '') j++;
    const expectMatch = j < lines.length ? EXPECT_MARKER.exec(lines[j]!) : null;
    if (expectMatch) {
      expect = expectMatch[1]!;
      try {
        new RegExp(expect);
      } catch (error) {
        throw new DocsSyntaxError(`${file}:${j + 1}: docs:expect is not a valid regular expression: ${(error as Error).message}`);
      }
      j++;
      while (j < lines.length && lines[j]!.trim() === '') j++;
    }
    const open = j < lines.length ? FENCE.exec(lines[j]!) : null;
    if (!open || !SHELLS.has(open[3]!)) {
      throw new DocsSyntaxError(`${file}:${markerLine}: docs:run must be followed by a \`\`\`sh (or bash) block`);
    }
    const code: string[] = [];
    let k = j + 1;
    for (; k < lines.length; k++) {
      if (lines[k]!.trim() === open[2]) break;
      code.push(lines[k]!.slice(Math.min(open[1]!.length, lines[k]!.length - lines[k]!.trimStart().length)));
    }
    if (k === lines.length) throw new DocsSyntaxError(`${file}:${j + 1}: the block is not closed`);
    blocks.push({ file, line: j + 2, code: code.join('\n') + '\n', expect });
    i = k;
  }
  return blocks;
}

/** README.md and every page under docs/ (not the site's own folders), or the files and folders given. */
export function docFiles(root: string = ROOT, given: string[] = []): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.md')) found.push(full);
    }
  };
  const targets = given.length > 0 ? given.map((g) => path.resolve(g)) : [path.join(root, 'README.md'), path.join(root, 'docs')];
  for (const target of targets) {
    if (!existsSync(target)) {
      if (given.length > 0) throw new Error(`${target}: no such file or folder`);
      continue;
    }
    if (statSync(target).isDirectory()) walk(target);
    else found.push(target);
  }
  return found;
}

/** The blocks of each page, in page order; a page's path is shown relative to `root`. */
export function collectBlocks(files: string[], root: string = ROOT): DocBlock[][] {
  return files
    .map((file) => {
      const shown = path.relative(root, file).startsWith('..') ? file : path.relative(root, file);
      return extractBlocks(shown, readFileSync(file, 'utf8'));
    })
    .filter((blocks) => blocks.length > 0);
}

/** A server the blocks run against. */
export interface Target {
  url: string;
  apiKey: string;
}

/**
 * The environment of a block: the caller's, less Mariner's own settings and the test runner's, plus the target.
 * A `mariner login` in a block keeps its key in the block's own config dir, never in the OS keychain of the
 * machine running the check (a desktop has one).
 */
function blockEnv(target: Target, cwd: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key.startsWith('VITEST') || key === 'NODE_ENV' || key === 'OPENAI_API_KEY' || key === 'OPENAI_BASE_URL') continue;
    env[key] = value;
  }
  return {
    ...env,
    PATH: `${path.join(cwd, '.bin')}${path.delimiter}${env['PATH'] ?? ''}`,
    MARINER_URL: target.url.replace(/\/+$/, ''),
    MARINER_API_KEY: target.apiKey,
    MARINER_CREDENTIAL_STORE: 'file',
    CURL_HOME: path.join(cwd, '.curl'),
  };
}

/** Runs one block in `cwd`. */
export function runBlock(block: DocBlock, target: Target, cwd: string, timeoutMs = BLOCK_TIMEOUT_MS): Promise<BlockResult> {
  const script = path.join(cwd, `.docs-block-${block.line}.sh`);
  // The trap names the command that failed (set -e alone exits silently); line 1 is the trap itself.
  writeFileSync(script, `trap 'echo "${FAILED_AT} $((LINENO - 1)) $?" >&2' ERR\n${block.code}`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('bash', ['--noprofile', '--norc', '-euo', 'pipefail', script], {
      cwd,
      env: blockEnv(target, cwd),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    const finish = (reason: string | undefined) => {
      clearTimeout(timer);
      rmSync(script, { force: true });
      resolve({ block, ok: reason === undefined, reason, stdout, stderr, ms: Date.now() - started });
    };
    child.once('error', (error) => finish(`could not run bash: ${error.message}`));
    child.once('close', (code, signal) => {
      if (timedOut) return finish(`did not finish within ${timeoutMs / 1000} s`);
      if (code !== 0) {
        const at = new RegExp(`^${FAILED_AT} (\\d+) (\\d+)$`, 'm').exec(stderr);
        stderr = stderr.replace(new RegExp(`^${FAILED_AT} .*\\n?`, 'gm'), '');
        const where = at ? `: the command at ${block.file}:${block.line + Number(at[1]) - 1} failed (status ${at[2]})` : '';
        return finish(`exited with ${code ?? signal}${where}`);
      }
      if (block.expect !== undefined && !new RegExp(block.expect, 'm').test(stdout)) return finish(`stdout does not match docs:expect /${block.expect}/`);
      finish(undefined);
    });
  });
}

/** Ends a block and whatever it started (a block runs in its own process group). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/**
 * Runs each page's blocks in order in a fresh directory of the page (with `node_modules` linked to the
 * repository's, so `import OpenAI from 'openai'` resolves), `concurrency` pages at a time. A page stops at
 * its first failing block: the blocks after it usually need what it should have made.
 */
export async function runPages(pages: DocBlock[][], target: Target, options: { concurrency?: number; timeoutMs?: number } = {}): Promise<BlockResult[]> {
  const missing = ['bash', 'curl', 'jq'].filter((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0);
  if (missing.length > 0) throw new Error(`the documentation's examples need ${missing.join(' and ')} on PATH (Debian: apt-get install ${missing.join(' ')})`);
  const results: BlockResult[][] = pages.map(() => []);
  let next = 0;
  const worker = async () => {
    while (next < pages.length) {
      const index = next++;
      const cwd = mkdtempSync(path.join(tmpdir(), 'mariner-docs-page-'));
      try {
        symlinkSync(path.join(ROOT, 'node_modules'), path.join(cwd, 'node_modules'), 'dir');
        // `mariner` on PATH: the repository's compiled build, as `npm link` would put it there.
        mkdirSync(path.join(cwd, '.bin'));
        writeFileSync(path.join(cwd, '.bin', 'mariner'), `#!/bin/sh\nexec "${process.execPath}" "${path.join(ROOT, 'dist/bin/mariner.js')}" "$@"\n`, {
          mode: 0o755,
        });
        // `curl -sf` fails silently; with show-error (curl's own config file) a failing block says why.
        mkdirSync(path.join(cwd, '.curl'));
        writeFileSync(path.join(cwd, '.curl', '.curlrc'), 'show-error\n');
        for (const block of pages[index]!) {
          const result = await runBlock(block, target, cwd, options.timeoutMs);
          results[index]!.push(result);
          if (!result.ok) break;
        }
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 2) }, worker));
  return results.flat();
}

/** A running `mariner up --demo-model` of the compiled build on a free port and a fresh data dir. */
export interface DocsServer extends Target {
  stop(): Promise<void>;
  output(): string;
}

/**
 * Starts `mariner up --demo-model` as `npm start` would (dist/, built first when a source changed), on a
 * free port with a temporary data dir and a fixed bootstrap key (MARINER_ADMIN_API_KEY). `settings` add
 * to its environment.
 */
export async function startDocsServer(settings: Record<string, string> = {}): Promise<DocsServer> {
  await buildIfNeeded(ROOT);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mariner-docs-data-'));
  const apiKey = `sk-docs-${randomBytes(16).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MARINER_') || key.startsWith('VITEST') || key === 'DATABASE_URL' || key === 'NODE_ENV') continue;
    env[key] = value;
  }
  Object.assign(env, {
    MARINER_DATA_DIR: dataDir,
    MARINER_PORT: '0',
    MARINER_ADMIN_API_KEY: apiKey,
    MARINER_LOG_LEVEL: 'warn',
    MARINER_LOCAL_BATCH_JOBS: 'true',
    ...settings,
  });
  const child = spawn(process.execPath, ['--enable-source-maps', path.join(ROOT, 'dist/bin/mariner.js'), 'up', '--demo-model'], {
    cwd: dataDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mariner up printed no URL within ${START_TIMEOUT_MS / 1000} s:\n${out}`)), START_TIMEOUT_MS);
      const check = () => {
        const match = /Demo model:/.test(out) ? /OpenAI API:\s+(http:\/\/\S+?)\/v1\b/.exec(out) : null;
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      };
      child.stdout.on('data', check);
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`mariner up exited (${child.exitCode ?? child.signalCode}) before it was up:\n${out}`));
      });
    });
    return { url, apiKey, stop, output: () => out };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The report of a run: one paragraph per failing block, then a summary line. */
export function report(results: BlockResult[], pages: number, total: number = results.length): string {
  const failed = results.filter((r) => !r.ok);
  const indent = (text: string) =>
    text.trimEnd() === ''
      ? '    (empty)'
      : text
          .trimEnd()
          .split('\n')
          .slice(-40)
          .map((l) => `    ${l}`)
          .join('\n');
  const parts = failed.map((r) =>
    [`FAIL ${r.block.file}:${r.block.line}: ${r.reason}`, indent(r.block.code), '  stdout:', indent(r.stdout), '  stderr:', indent(r.stderr)].join('\n'),
  );
  const skipped = total - results.length;
  parts.push(
    `docs:check: ${results.length - failed.length} of ${total} blocks passed on ${pages} pages; ${failed.length} failed` +
      (skipped > 0 ? `, ${skipped} not run (after a failure on their page)` : ''),
  );
  return parts.join('\n\n');
}

/** Collects, starts a server unless a target is given, runs, stops. */
export async function docsCheck(
  options: { files?: string[]; target?: Target; concurrency?: number } = {},
): Promise<{ results: BlockResult[]; pages: number; total: number }> {
  const pages = collectBlocks(docFiles(ROOT, options.files ?? []));
  const total = pages.reduce((n, blocks) => n + blocks.length, 0);
  if (pages.length === 0) return { results: [], pages: 0, total };
  const server = options.target ? undefined : await startDocsServer();
  try {
    const results = await runPages(pages, options.target ?? server!, { concurrency: options.concurrency });
    return { results, pages: pages.length, total };
  } finally {
    await server?.stop();
  }
}

async function main(argv: string[]): Promise<number> {
  const files: string[] = [];
  let url: string | undefined;
  let concurrency: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--url') url = argv[++i];
    else if (arg === '--concurrency') concurrency = Number(argv[++i]);
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: npm run docs:check -- [--url URL (key in MARINER_API_KEY)] [--concurrency N] [FILE|FOLDER ...]');
      return 0;
    } else files.push(arg);
  }
  let target: Target | undefined;
  if (url !== undefined) {
    const apiKey = process.env['MARINER_API_KEY'];
    if (!apiKey) throw new Error('--url needs the server key in MARINER_API_KEY');
    target = { url, apiKey };
  }
  const { results, pages, total } = await docsCheck({ files, target, concurrency });
  console.log(report(results, pages, total));
  return results.length === total && results.every((r) => r.ok) ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      console.error(error instanceof DocsSyntaxError ? error.message : error);
      process.exitCode = 2;
    },
  );
}
