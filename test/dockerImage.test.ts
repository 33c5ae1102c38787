import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildIfNeeded } from '../scripts/build.mjs';

/**
 * What can be checked of the image without a container engine: it is built on the Node that CI tests
 * on, its runtime stage holds the compiled build (dist/) and the production install and nothing else,
 * everything the compiled entry point imports is in one or the other, and the image's command line
 * starts `mariner` from dist/ as it is.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/**
 * The production tree's budget: 386 MB measured on 2026-12-07 (802 MB installed, less pino@9.3.0's 398 MB
 * test binaries); about 10% over it, so a new dependency of a few MB passes and one that doubles a part
 * of the tree (another Kubernetes client, a second llama.cpp build) is a reviewed change of this number.
 */
const PRODUCTION_BUDGET_MB = 425;
const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const packageJson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  type: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** Build arguments declared before the first stage, with their defaults (`ARG NODE_IMAGE=...`). */
const buildArgs = new Map([...dockerfile.split(/^FROM /m)[0]!.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
const withArgs = (text: string) => text.replace(/\$\{(\w+)\}/g, (whole, name: string) => buildArgs.get(name) ?? whole);

/** The stages, by name, with their instructions (continuation lines joined), the base image's arguments resolved. */
const stages = new Map<string, { from: string; lines: string[] }>();
for (const stage of dockerfile
  .replace(/\\\n\s*/g, ' ')
  .split(/^(?=FROM )/m)
  .slice(1)) {
  const [, from, name] = /^FROM (\S+) AS (\S+)/.exec(stage)!;
  stages.set(name!, { from: withArgs(from!), lines: stage.split('\n').filter((line) => /^[A-Z]+ /.test(line)) });
}

/** Runtime imports of a compiled file: static and dynamic (esbuild has erased the type-only ones). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const statics = [...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/gm)].map((m) => m[1]!);
  const bare = [...text.matchAll(/^\s*import\s*["']([^"']+)["']/gm)].map((m) => m[1]!);
  // Not in a JSDoc type (`@type {import('./list.d.ts').ListNode}`, `import('mysql').Pool | import('mysql2').Pool`),
  // which bundled dependencies keep in their comments: comment lines are skipped, and a type in braces.
  const code = text
    .split('\n')
    .filter((line) => !/^\s*(?:\*|\/\*|\/\/)/.test(line))
    .join('\n');
  const dynamic = [...code.matchAll(/(?<!\{)\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  return [...statics, ...bare, ...dynamic];
}

function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

beforeAll(async () => {
  // The image's build stage runs scripts/build.mjs; here, dist/ as `npm start` keeps it.
  await buildIfNeeded();
}, 60_000);

describe('the container image', () => {
  it('runs on Node 24, the version CI tests on and .nvmrc names', () => {
    const ciNode = /^NODE_VERSION=(\d+\.\d+)\.\d+$/m.exec(readFileSync(path.join(ROOT, '.ci/run'), 'utf8'))?.[1];
    expect(ciNode).toMatch(/^24\./);
    for (const [name, stage] of stages) expect(stage.from, name).toBe(`node:${ciNode}-bookworm-slim`);
    expect(readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim()).toBe('24');
    // One argument names the base of every stage, so a build can pin it by digest (NODE_IMAGE=node:...@sha256:...).
    expect(dockerfile.match(/^FROM (\S+)/gm)!.every((line) => line === 'FROM ${NODE_IMAGE}')).toBe(true);
  });

  it(`keeps the production dependency tree under its budget (${PRODUCTION_BUDGET_MB} MB) once the deps stage has pruned it`, async () => {
    // What `npm ci --omit=dev` installs, from this checkout's node_modules (the same lockfile), less what the
    // deps stage removes (rm -rf node_modules/...). Each package's own files, its nested node_modules counted once.
    const { stdout } = await promisify(execFile)('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }).catch(
      (error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }),
    );
    const deps = stages.get('deps')!.lines.join('\n');
    const pruned = [...deps.matchAll(/rm -rf (node_modules\/\S+)/g)].map((m) => path.join(ROOT, m[1]!));
    expect(pruned).toContain(path.join(ROOT, 'node_modules/pino/test'));
    const packages = [...new Set(stdout.split('\n').filter((line) => line.startsWith(path.join(ROOT, 'node_modules'))))];
    expect(packages.length).toBeGreaterThan(100);
    let bytes = 0;
    let prunedBytes = 0;
    for (const dir of packages) {
      for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
        if (!entry.isFile()) continue;
        const file = path.join(entry.parentPath, entry.name);
        if (path.relative(dir, file).split(path.sep).includes('node_modules')) continue;
        const size = statSync(file).size;
        if (pruned.some((p) => file.startsWith(p + path.sep))) prunedBytes += size;
        else bytes += size;
      }
    }
    const megabytes = Math.round(bytes / 1e6);
    console.log(`production node_modules: ${Math.round((bytes + prunedBytes) / 1e6)} MB installed, ${megabytes} MB in the image`);
    expect(megabytes).toBeLessThan(PRODUCTION_BUDGET_MB);
  }, 120_000);

  it('checks and compiles the sources in the build stage; the runtime stage takes dist/, the production install and package.json only', () => {
    const build = stages.get('build')!.lines.join('\n');
    expect(build).toContain('npx tsc --noEmit');
    expect(build).toContain('npx tsx schema/compose.ts --check');
    expect(build).toContain('node scripts/build.mjs');
    // The production install is patched as `npm ci` would (its postinstall), though install scripts are off.
    expect(packageJson.devDependencies['tsx'], 'tsx is for development only').toBeDefined();
    const deps = stages.get('deps')!.lines.join('\n');
    expect(deps).toMatch(/npm ci --omit=dev --ignore-scripts[^\n]*&& node scripts\/patchDependencies\.mjs/);
    const copies = stages.get('runtime')!.lines.filter((line) => line.startsWith('COPY'));
    expect(copies).toEqual([
      'COPY --from=deps /app/node_modules ./node_modules',
      // "type": "module": dist/'s .js files are ES modules.
      'COPY --from=build /app/package.json ./package.json',
      'COPY --from=build /app/dist ./dist',
      // The web console's build, which the gateway serves at /console.
      'COPY --from=build /app/console/dist ./console/dist',
    ]);
    expect(packageJson.type).toBe('module');
  });

  it('holds every file and production package the compiled `mariner` imports, from its entry point on', () => {
    const missing: string[] = [];
    const notProduction = new Set<string>();
    const seen = new Set<string>();
    const pending = [path.join(ROOT, 'dist', 'bin', 'mariner.js')];
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      for (const specifier of importsOf(file)) {
        if (specifier.startsWith('.')) {
          const target = path.resolve(path.dirname(file), specifier);
          if (!target.startsWith(path.join(ROOT, 'dist') + path.sep) || !existsSync(target)) missing.push(`${path.relative(ROOT, file)} → ${specifier}`);
          else if (target.endsWith('.js')) pending.push(target);
        } else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier)) {
          const name = packageOf(specifier);
          if (!packageJson.dependencies[name]) notProduction.add(`${name} (${path.relative(ROOT, file)})`);
        }
      }
    }
    // The bundle, its lazily imported chunks and the files built beside it (schemas, child-process scripts).
    expect(seen.size).toBeGreaterThan(20);
    expect(missing).toEqual([]);
    expect([...notProduction]).toEqual([]);
  });

  it("runs `mariner` the way the image's entrypoint does, from dist/ on plain node", async () => {
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
    const [command, ...args] = JSON.parse(entrypoint![1]!) as string[];
    expect(command).toBe('node');
    expect(args).toEqual(['--enable-source-maps', 'dist/bin/mariner.js']);
    const { stdout } = await promisify(execFile)(process.execPath, [...args, 'help'], { cwd: ROOT });
    expect(stdout).toContain('serve     run one component, as the Helm chart does: mariner serve <component>');
  }, 30_000);
});
