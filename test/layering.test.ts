import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layering DESIGN §2 describes, read from the import graph: every import of every .ts file that is
 * not a test (static `import`/`export ... from`, side-effect imports and `import()`), type-only imports
 * included. A layer may import itself and the layers listed for it, nothing else.
 */
const LAYERS: Record<string, { mayImport: readonly string[] | '*'; why: string }> = {
  lib: { mayImport: [], why: 'small shared runtime pieces everything uses: lib knows nothing above it' },
  schema: { mayImport: ['lib'], why: 'the contract (SDL, policy map, role → scope table, scalars): it serves every component and knows none' },
  subgraphs: {
    mayImport: ['lib', 'schema'],
    why: 'a subgraph reaches another only over GraphQL (lib/internalClient.ts), never through its modules; each folder is its own layer',
  },
  gateway: { mayImport: ['lib', 'schema'], why: 'the gateway reaches subgraphs over GraphQL only' },
  'rest-compat': { mayImport: ['lib', 'schema'], why: 'the REST surface is translated to GraphQL operations on the gateway, over HTTP' },
  agent: { mayImport: ['lib', 'schema'], why: 'the agent runs on worker clusters and talks to the control plane over the tunnel and the public API' },
  console: { mayImport: [], why: 'the web console runs in the browser: it reaches the platform over GraphQL and HTTP only, with documents typed by codegen' },
  bin: { mayImport: '*', why: 'the entry point assembles every component' },
};

/**
 * Top-level folders holding .ts files that are no layer: their imports are not checked. A new folder
 * must be added to LAYERS or here, with the reason.
 */
const NOT_LAYERS: Record<string, string> = {
  test: 'end-to-end tests and their support code set up any layer (DESIGN §2: tests cross components)',
};

/** Imports that break the rules and must stay for now: none. An entry needs its reason. */
const EXCEPTIONS: Record<string, string> = {};

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Every .ts file of the repository that is not a test, relative to the root, with '/' separators. */
function sourceFiles(dir = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
    const relative = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...sourceFiles(relative));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) out.push(relative);
  }
  return out;
}

/** The layer a file belongs to: its top-level folder, or `subgraphs/<name>`; null for root files (tool configs). */
function layerOf(file: string): string | null {
  const [top, second] = file.split('/');
  if (!file.includes('/')) return null;
  return top === 'subgraphs' && second ? `subgraphs/${second}` : top!;
}

/** The files a file imports, by repository path (package imports are not layering). */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(path.join(ROOT, file), 'utf8'), true, true);
  return importedFiles
    .map((imported) => imported.fileName)
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)));
}

function mayImport(from: string, to: string): boolean {
  if (from === to) return true;
  const rule = LAYERS[from.startsWith('subgraphs/') ? 'subgraphs' : from]!;
  if (rule.mayImport === '*') return true;
  // Another subgraph is never a layer below: subgraphs/X may not import subgraphs/Y.
  return rule.mayImport.includes(to);
}

describe('layering (DESIGN §2)', () => {
  const files = sourceFiles();

  it('every folder with TypeScript is a layer or named as none', () => {
    const unknown = new Set(
      files.map(layerOf).filter((layer): layer is string => layer !== null && !(layer.split('/')[0]! in LAYERS) && !(layer in NOT_LAYERS)),
    );
    expect([...unknown]).toEqual([]);
  });

  it('each layer imports only itself and the layers below it', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = layerOf(file);
      if (from === null || from in NOT_LAYERS) continue;
      for (const target of importsOf(file)) {
        const to = layerOf(target);
        if (to === null || mayImport(from, to)) continue;
        const edge = `${file} -> ${target}`;
        if (!(edge in EXCEPTIONS)) violations.push(`${edge} (${from} may not import ${to}: ${LAYERS[from.split('/')[0]!]!.why})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('finds the imports it checks', () => {
    // A guard against a reader that sees nothing: these edges exist and are allowed.
    expect(importsOf('lib/clusterAccess.ts')).toContain('lib/internalClient.js');
    expect(importsOf('gateway/authentication.ts')).toContain('schema/rbac/projectResolution.js');
    expect(mayImport('subgraphs/vectorstores', 'subgraphs/inference')).toBe(false);
    expect(mayImport('lib', 'schema')).toBe(false);
    expect(mayImport('gateway', 'subgraphs/rbac')).toBe(false);
  });
});
