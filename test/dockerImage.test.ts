import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * What can be checked of the image without a container engine: the Dockerfile copies every folder the
 * code imports from, the production install (`npm ci --omit=dev`) has every package it imports, and the
 * image's command line starts `mariner`.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const packageJson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** The source folders the runtime stage copies (`COPY --from=build /app/<dir> ./<dir>`). */
const copiedDirs = [...dockerfile.matchAll(/^COPY --from=build \/app\/([\w-]+) \.\/\1$/gm)].map((m) => m[1]!);

/** Runtime imports of a file: static and dynamic, type-only ones left out (erased at run time). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const statics = [...text.matchAll(/^\s*(import|export)\s+(?!type\s)[^;]*?\sfrom\s+'([^']+)'/gm)].map((m) => m[2]!);
  const bare = [...text.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]!);
  const dynamic = [...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!);
  return [...statics, ...bare, ...dynamic];
}

function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

describe('the container image', () => {
  it('copies the folders of every component and of the schema', () => {
    expect(copiedDirs.sort()).toEqual(['agent', 'bin', 'gateway', 'lib', 'rest-compat', 'schema', 'subgraphs']);
  });

  it('holds every file and production package `mariner` imports, from its entry point on', () => {
    const outside: string[] = [];
    const notProduction = new Set<string>();
    const seen = new Set<string>();
    const pending = [path.join(ROOT, 'bin', 'mariner.ts')];
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      for (const specifier of importsOf(file)) {
        if (specifier.startsWith('.')) {
          // Sources import each other as .js (NodeNext); tsx maps that to the .ts file.
          const target = path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts');
          if (!copiedDirs.includes(path.relative(ROOT, target).split(path.sep)[0]!)) outside.push(`${path.relative(ROOT, file)} → ${specifier}`);
          else if (target.endsWith('.ts')) pending.push(target);
        } else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier)) {
          const name = packageOf(specifier);
          if (!packageJson.dependencies[name]) notProduction.add(`${name} (${path.relative(ROOT, file)})`);
        }
      }
    }
    expect(seen.size).toBeGreaterThan(50);
    expect(outside).toEqual([]);
    expect([...notProduction]).toEqual([]);
  });

  it("runs `mariner` the way the image's entrypoint does (node --import tsx), without tsx on the PATH", async () => {
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
    const [command, ...args] = JSON.parse(entrypoint![1]!) as string[];
    expect(command).toBe('node');
    const { stdout } = await promisify(execFile)(process.execPath, [...args, 'help'], { cwd: ROOT });
    expect(stdout).toContain('serve     run one component, as the Helm chart does: mariner serve <component>');
  }, 30_000);
});
