import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
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
 * The production trees' budgets, about 10% over what was measured on 2026-12-07, so a new dependency of a
 * few MB passes and one that doubles a part of the tree (another Kubernetes client, a second llama.cpp
 * build) is a reviewed change of these numbers:
 * - agent-local (everything): 386 MB (802 MB installed, less pino@9.3.0's 398 MB test binaries);
 * - control-plane (the chart's image): 272 MB, the same less the local executor's packages (node-llama-cpp
 *   and its llama.cpp build, whisper.cpp) and the 118 packages only they need, typescript among them.
 */
const PRODUCTION_BUDGET_MB = 425;
const CONTROL_PLANE_BUDGET_MB = 300;
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

/** The packages the control-plane target leaves out (the deps-control-plane stage's LOCAL_EXECUTOR_PACKAGES). */
const localExecutorPackages = /^ARG LOCAL_EXECUTOR_PACKAGES="([^"]+)"$/m.exec(stages.get('deps-control-plane')?.lines.join('\n') ?? '')?.[1]?.split(' ') ?? [];

/**
 * The production tree as `npm ci --omit=dev` installs it (from this checkout's node_modules, the same
 * lockfile), as paths relative to the root (node_modules/a, node_modules/a/node_modules/b), and the part of
 * it the control-plane target keeps: what the other production dependencies reach through the lockfile's
 * dependencies (optional and peer ones included when installed), as `npm prune` keeps it.
 */
let production: Promise<{ all: string[]; controlPlane: string[] }> | undefined;
function productionTrees() {
  production ??= (async () => {
    const { stdout } = await promisify(execFile)('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }).catch(
      (error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }),
    );
    const all = [
      ...new Set(
        stdout
          .split('\n')
          .filter((line) => line.startsWith(path.join(ROOT, 'node_modules')))
          .map((line) => path.relative(ROOT, line).split(path.sep).join('/')),
      ),
    ];
    const installed = new Set(all);
    type LockEntry = { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string> };
    const lock = (JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages;
    // Node's lookup: the package's own node_modules, then each folder above it.
    const resolve = (from: string, name: string): string | undefined => {
      for (let dir = from; ;) {
        const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
        if (installed.has(candidate)) return candidate;
        if (!dir) return undefined;
        dir = dir.slice(0, dir.lastIndexOf('node_modules/')).replace(/\/$/, '');
      }
    };
    const kept = new Set<string>();
    const pending = Object.keys(packageJson.dependencies)
      .filter((name) => !localExecutorPackages.includes(name))
      .map((name) => resolve('', name))
      .filter((dir): dir is string => dir !== undefined);
    while (pending.length > 0) {
      const dir = pending.pop()!;
      if (kept.has(dir)) continue;
      kept.add(dir);
      const entry = lock[dir] ?? {};
      for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies })) {
        const target = resolve(dir, name);
        if (target && !kept.has(target)) pending.push(target);
      }
    }
    return { all, controlPlane: all.filter((dir) => kept.has(dir)) };
  })();
  return production;
}

/** Bytes of the packages' own files (their nested node_modules counted as packages of their own), less the pruned paths. */
function treeBytes(packages: string[], pruned: string[]): { bytes: number; prunedBytes: number } {
  let bytes = 0;
  let prunedBytes = 0;
  for (const relative of packages) {
    const dir = path.join(ROOT, relative);
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      if (path.relative(dir, file).split(path.sep).includes('node_modules')) continue;
      const size = statSync(file).size;
      if (pruned.some((p) => file.startsWith(p + path.sep))) prunedBytes += size;
      else bytes += size;
    }
  }
  return { bytes, prunedBytes };
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
    // Every stage is on that Node, directly or through an earlier stage of this file.
    for (const [name, stage] of stages) if (!stages.has(stage.from)) expect(stage.from, name).toBe(`node:${ciNode}-bookworm-slim`);
    expect(readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim()).toBe('24');
    // One argument names the base image, so a build can pin it by digest (NODE_IMAGE=node:...@sha256:...).
    expect(dockerfile.match(/^FROM (\S+)/gm)!.every((line) => line === 'FROM ${NODE_IMAGE}' || stages.has(line.slice(5)))).toBe(true);
  });

  it(`keeps the production dependency trees under their budgets (agent-local ${PRODUCTION_BUDGET_MB} MB, control-plane ${CONTROL_PLANE_BUDGET_MB} MB) once the deps stages have pruned them`, async () => {
    // Less what the deps stage removes (rm -rf node_modules/...), which the control-plane tree is made from.
    const deps = stages.get('deps')!.lines.join('\n');
    const pruned = [...deps.matchAll(/rm -rf (node_modules\/\S+)/g)].map((m) => path.join(ROOT, m[1]!));
    expect(pruned).toContain(path.join(ROOT, 'node_modules/pino/test'));
    const { all, controlPlane } = await productionTrees();
    expect(all.length).toBeGreaterThan(100);
    const full = treeBytes(all, pruned);
    const slim = treeBytes(controlPlane, pruned);
    const mb = (bytes: number) => Math.round(bytes / 1e6);
    console.log(
      `production node_modules: ${mb(full.bytes + full.prunedBytes)} MB installed, ${mb(full.bytes)} MB in the agent-local image (${all.length} packages), ` +
        `${mb(slim.bytes)} MB in the control-plane image (${controlPlane.length} packages)`,
    );
    expect(mb(full.bytes)).toBeLessThan(PRODUCTION_BUDGET_MB);
    expect(mb(slim.bytes)).toBeLessThan(CONTROL_PLANE_BUDGET_MB);
    // The control-plane tree has none of the local executor's packages, nor what only they need.
    expect(localExecutorPackages).toEqual(['node-llama-cpp', '@node-llama-cpp/linux-x64', '@fugood/whisper.node', '@fugood/node-whisper-linux-x64']);
    for (const name of [...localExecutorPackages, 'typescript']) {
      expect(all, name).toContain(`node_modules/${name}`);
      expect(controlPlane, name).not.toContain(`node_modules/${name}`);
    }
    // Everything the control plane's own dependencies need is kept.
    for (const name of ['@apollo/gateway', '@kubernetes/client-node', '@aws-sdk/client-s3', 'pino', 'ws'])
      expect(controlPlane).toContain(`node_modules/${name}`);
  }, 120_000);

  it('builds the control-plane tree by taking the local executor`s packages out of package.json and pruning, offline, from the lockfile', () => {
    const stage = stages.get('deps-control-plane')!.lines.join('\n');
    expect(stage).toContain('COPY --from=deps /app/node_modules ./node_modules');
    expect(stage).toMatch(/delete p\.dependencies\[name\][^\n]*\$\{LOCAL_EXECUTOR_PACKAGES\}[^\n]*&& npm prune --omit=dev --ignore-scripts --offline/);
    for (const name of localExecutorPackages) expect(packageJson.dependencies[name], name).toBeDefined();
  });

  it('checks and compiles the sources in the build stage; the runtime stage takes dist/, the production install and package.json only', () => {
    const build = stages.get('build')!.lines.join('\n');
    expect(build).toContain('npx tsc --noEmit');
    expect(build).toContain('npx tsx schema/compose.ts --check');
    expect(build).toContain('node scripts/build.mjs');
    // The production install is patched as `npm ci` would (its postinstall), though install scripts are off.
    expect(packageJson.devDependencies['tsx'], 'tsx is for development only').toBeDefined();
    const deps = stages.get('deps')!.lines.join('\n');
    expect(deps).toMatch(/npm ci --omit=dev --ignore-scripts[^\n]*&& node scripts\/patchDependencies\.mjs/);
    const copies = (stage: string) => stages.get(stage)!.lines.filter((line) => line.startsWith('COPY'));
    expect(copies('runtime')).toEqual([
      // "type": "module": dist/'s .js files are ES modules.
      'COPY --from=build /app/package.json ./package.json',
      'COPY --from=build /app/dist ./dist',
      // The web console's build, which the gateway serves at /console.
      'COPY --from=build /app/console/dist ./console/dist',
    ]);
    // The two targets: the runtime stage and one production tree each; both run as user 1000.
    expect(stages.get('control-plane')!.from).toBe('runtime');
    expect(copies('control-plane')).toEqual(['COPY --from=deps-control-plane /app/node_modules ./node_modules']);
    expect(stages.get('agent-local')!.from).toBe('runtime');
    expect(copies('agent-local')).toEqual(['COPY --from=deps /app/node_modules ./node_modules']);
    for (const target of ['control-plane', 'agent-local']) expect(stages.get(target)!.lines.at(-1), target).toBe('USER 1000:1000');
    // A plain `docker build .` makes the full image, as before.
    expect([...stages.keys()].at(-1)).toBe('agent-local');
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

  it('starts, and loads every part of the bundled program, without the local executor`s packages (as in the control-plane image)', async () => {
    // A copy of the image's /app with the control-plane tree only: dist/, package.json, and node_modules
    // holding links to that tree's top-level packages (--preserve-symlinks: their own imports are looked
    // up there too, not in this checkout's full node_modules).
    const { controlPlane } = await productionTrees();
    const app = mkdtempSync(path.join(tmpdir(), 'mariner-control-plane-'));
    try {
      cpSync(path.join(ROOT, 'dist'), path.join(app, 'dist'), { recursive: true });
      cpSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
      for (const relative of controlPlane.filter((dir) => dir.split('node_modules/').length === 2)) {
        mkdirSync(path.dirname(path.join(app, relative)), { recursive: true });
        symlinkSync(path.join(ROOT, relative), path.join(app, relative), 'dir');
      }
      const node = (args: string[]) => promisify(execFile)(process.execPath, ['--preserve-symlinks', ...args], { cwd: app, maxBuffer: 4 * 1024 * 1024 });
      const { stdout: help } = await node(['dist/bin/mariner.js', 'help']);
      expect(help).toContain('serve     run one component');
      // Every chunk of the bundle (each lazily imported part: every component, the agent and its executors),
      // imported: one importing node-llama-cpp or whisper.cpp at load would fail to link here.
      const chunks = readdirSync(path.join(app, 'dist', 'bin')).filter((name) => /^mariner\.chunk-.*\.js$/.test(name));
      expect(chunks.length).toBeGreaterThan(3);
      const script = [
        "import { pathToFileURL } from 'node:url';",
        // The chunk of bin/mariner.ts runs its command line when loaded: `help`, which only prints.
        "process.argv = [process.argv[0], 'dist/bin/mariner.js', 'help'];",
        'const missing = [];',
        `for (const name of ${JSON.stringify([...localExecutorPackages, 'typescript'])}) {`,
        '  await import(name).then(() => missing.push(`${name} resolves`), (error) => { if (error.code !== "ERR_MODULE_NOT_FOUND") missing.push(`${name}: ${error.code}`); });',
        '}',
        `for (const chunk of ${JSON.stringify(chunks)}) await import(pathToFileURL('dist/bin/' + chunk).href);`,
        "process.stdout.write('\\n' + JSON.stringify({ missing, loaded: true }) + '\\n');",
        'process.exit(0);',
      ].join('\n');
      const { stdout } = await node(['--input-type=module', '-e', script]);
      // The packages are really gone there, and every chunk loaded.
      expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ missing: [], loaded: true });
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  }, 120_000);

  it("runs `mariner` the way the image's entrypoint does, from dist/ on plain node", async () => {
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
    const [command, ...args] = JSON.parse(entrypoint![1]!) as string[];
    expect(command).toBe('node');
    expect(args).toEqual(['--enable-source-maps', 'dist/bin/mariner.js']);
    const { stdout } = await promisify(execFile)(process.execPath, [...args, 'help'], { cwd: ROOT });
    expect(stdout).toContain('serve     run one component, as the Helm chart does: mariner serve <component>');
  }, 30_000);
});
