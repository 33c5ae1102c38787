/**
 * The compiled build (scripts/build.mjs) that `npm start` and the image run: what goes into dist/, and
 * that `npm start` rebuilds exactly when a source changed. Run on a small project of its own in a temp
 * dir, so other work on the tree is not disturbed; test/embedded.test.ts runs the real dist/ as a user
 * does, and test/dockerImage.test.ts checks the image's copy of it.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { build, buildIfNeeded, isUpToDate } from '../scripts/build.mjs';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A project with the runtime's layout: an entry point with the sources' shebang, a module, a test, a schema file, a README. */
function project(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'mariner-build-'));
  dirs.push(root);
  const files: Record<string, string> = {
    'package.json': '{ "type": "module" }\n',
    'tsconfig.json': JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', strict: true, isolatedModules: true } }),
    'bin/mariner.ts': [
      '#!/usr/bin/env -S npx tsx',
      "import { readFileSync } from 'node:fs';",
      "import { greeting, type Greeting } from '../lib/greeting.js';",
      "const schema = readFileSync(new URL('../schema/hello.graphql', import.meta.url), 'utf8');",
      'const out: Greeting = greeting(schema.trim());',
      'process.stdout.write(`${out}\\n`);',
      '',
    ].join('\n'),
    'lib/greeting.ts': 'export type Greeting = string;\nexport const greeting = (name: string): Greeting => `hello from ${name}`;\n',
    'lib/greeting.test.ts': "throw new Error('tests are not part of the build');\n",
    'lib/README.md': '# lib\n',
    'schema/hello.graphql': 'type Query { hello: String }\n',
  };
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  }
  return root;
}

/** Moves a file's mtime forward, as an editor's save does. */
function touch(file: string): void {
  const later = new Date(statSync(file).mtimeMs + 5_000);
  utimesSync(file, later, later);
}

describe('the compiled build (scripts/build.mjs)', () => {
  it('compiles every source to dist/ in the same layout, copies the files read at run time, and leaves tests and docs out', async () => {
    const root = project();
    const result = await build(root);
    expect(result).toMatchObject({ files: 2, assets: 1 });
    const dist = path.join(root, 'dist');
    expect(existsSync(path.join(dist, 'lib/greeting.js'))).toBe(true);
    expect(existsSync(path.join(dist, 'schema/hello.graphql'))).toBe(true);
    expect(existsSync(path.join(dist, 'lib/greeting.test.js'))).toBe(false);
    expect(existsSync(path.join(dist, 'lib/README.md'))).toBe(false);
    // The entry point runs on plain node, executable, without tsx.
    const entry = path.join(dist, 'bin/mariner.js');
    expect(readFileSync(entry, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(statSync(entry).mode & 0o111).not.toBe(0);
    const { stdout } = await promisify(execFile)(process.execPath, [entry], { cwd: tmpdir() });
    expect(stdout).toBe('hello from type Query { hello: String }\n');
    // No staging folder is left behind.
    expect(readdirSync(root).filter((name) => name.startsWith('dist'))).toEqual(['dist']);
  });

  it('bundles the entry: a module still finds the files next to its own place in dist/, a lazy import loads on demand, and a package that looks for files next to itself fails the build', async () => {
    const root = project();
    const write = (file: string, text: string) => {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), text);
    };
    // lib/ is not bin/: bundled into bin/mariner.js without its own import.meta.url, lib/words.ts would look in bin/.
    write(
      'lib/words.ts',
      "import { readFileSync } from 'node:fs';\nexport const words = () => readFileSync(new URL('./words.txt', import.meta.url), 'utf8').trim();\n",
    );
    write('lib/words.txt', 'from next to lib/words.ts\n');
    write('bin/mariner.ts', "#!/usr/bin/env -S npx tsx\nconst { words } = await import('../lib/words.js');\nprocess.stdout.write(`${words()}\\n`);\n");
    await build(root);
    const dist = path.join(root, 'dist');
    // One program: the entry, then as chunks beside it the program (imported after the Node version check) and its lazily imported part.
    expect(readdirSync(path.join(dist, 'bin')).filter((name) => /^mariner\.chunk-.*\.js$/.test(name))).toHaveLength(2);
    expect(readFileSync(path.join(dist, 'bin/mariner.js'), 'utf8')).not.toContain('words.txt');
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(dist, 'bin/mariner.js')], { cwd: tmpdir() });
    expect(stdout).toBe('from next to lib/words.ts\n');

    write('node_modules/locating/package.json', '{ "name": "locating", "main": "index.js" }\n');
    write('node_modules/locating/index.js', "module.exports = require('node:path').join(__dirname, 'data.bin');\n");
    write('lib/words.ts', "import where from 'locating';\nexport const words = () => where;\n");
    await expect(build(root)).rejects.toThrow(/bundled packages that look for files next to themselves: locating/);
    // The failed build left the previous dist/ as it was.
    expect(readdirSync(root).filter((name) => name.startsWith('dist'))).toEqual(['dist']);
  });

  it('npm start rebuilds only when a source or asset changed, was added or was removed', async () => {
    const root = project();
    expect(isUpToDate(root)).toBe(false);
    expect(await buildIfNeeded(root)).toBeDefined();
    expect(isUpToDate(root)).toBe(true);
    expect(await buildIfNeeded(root)).toBeUndefined();

    touch(path.join(root, 'lib/greeting.ts'));
    expect(isUpToDate(root)).toBe(false);
    await buildIfNeeded(root);
    expect(isUpToDate(root)).toBe(true);

    touch(path.join(root, 'schema/hello.graphql'));
    expect(isUpToDate(root)).toBe(false);
    await buildIfNeeded(root);

    writeFileSync(path.join(root, 'lib/farewell.ts'), 'export const farewell = 1;\n');
    expect(isUpToDate(root)).toBe(false);
    await buildIfNeeded(root);
    expect(existsSync(path.join(root, 'dist/lib/farewell.js'))).toBe(true);

    // A removed source goes from dist/ too (a fresh dist/ each build, nothing stale imported).
    rmSync(path.join(root, 'lib/farewell.ts'));
    expect(isUpToDate(root)).toBe(false);
    await buildIfNeeded(root);
    expect(existsSync(path.join(root, 'dist/lib/farewell.js'))).toBe(false);

    // Tests and docs are not inputs: editing them does not rebuild.
    touch(path.join(root, 'lib/greeting.test.ts'));
    touch(path.join(root, 'lib/README.md'));
    expect(isUpToDate(root)).toBe(true);
  });

  it('two builds at once leave one complete dist/', async () => {
    const root = project();
    await Promise.all([build(root), build(root), build(root)]);
    expect(isUpToDate(root)).toBe(true);
    expect(readdirSync(root).filter((name) => name.startsWith('dist'))).toEqual(['dist']);
    expect(existsSync(path.join(root, 'dist/bin/mariner.js'))).toBe(true);
    expect(existsSync(path.join(root, 'dist/schema/hello.graphql'))).toBe(true);
  });
});
