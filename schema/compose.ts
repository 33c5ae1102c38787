/**
 * Composes the subgraph SDLs into schema/supergraph.graphql with @apollo/composition.
 * `--check` fails when the committed file is stale. Any composition error fails; a composition
 * hint fails unless it is listed in accepted-hints.json (reviewed on purpose).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import { placeholderUrl, SUBGRAPH_NAMES, subgraphSdl } from './subgraphs.js';

const target = fileURLToPath(new URL('./supergraph.graphql', import.meta.url));
const acceptedFile = fileURLToPath(new URL('./accepted-hints.json', import.meta.url));

export function compose(): { supergraphSdl: string; hints: { code: string; message: string }[] } {
  const result = composeServices(SUBGRAPH_NAMES.map((name) => ({ name, typeDefs: parse(subgraphSdl(name)), url: placeholderUrl(name) })));
  if (result.errors) {
    throw new Error(`composition failed:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
  }
  const hints = result.hints.map((h) => ({ code: h.definition.code, message: h.message }));
  return { supergraphSdl: `${result.supergraphSdl.trim()}\n`, hints };
}

function main(): void {
  const check = process.argv.includes('--check');
  const { supergraphSdl, hints } = compose();
  const accepted = new Set<string>(JSON.parse(readFileSync(acceptedFile, 'utf8')) as string[]);
  const unaccepted = hints.filter((h) => !accepted.has(`${h.code}: ${h.message}`));
  if (unaccepted.length) {
    console.error('composition hints not accepted in schema/accepted-hints.json:');
    for (const h of unaccepted) console.error(`- ${h.code}: ${h.message}`);
    process.exit(1);
  }
  if (check) {
    let current = '';
    try {
      current = readFileSync(target, 'utf8');
    } catch {
      /* missing counts as stale */
    }
    if (current !== supergraphSdl) {
      console.error('schema/supergraph.graphql is stale: run `npm run compose` and commit it');
      process.exit(1);
    }
    console.log('supergraph is current');
    return;
  }
  writeFileSync(target, supergraphSdl);
  console.log(`wrote ${target}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
