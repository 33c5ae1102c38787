import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The command line that runs one of Mariner's modules as its own Node process (a runtime, a trainer).
 * Compiled (dist/, `.js`): plain `node file.js`. From sources (`.ts`: `npm run dev`, the tests): through
 * tsx, named by an absolute specifier so the child finds it whatever its working directory; tsx is a
 * development dependency, so it is looked up only then.
 */
export function nodeCommand(module: URL): string[] {
  const file = fileURLToPath(module);
  if (!file.endsWith('.ts')) return [process.execPath, file];
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return [process.execPath, '--import', tsx, file];
}

/** The module `name` beside the calling one (its import.meta.url), as the caller is: `.ts` from sources, `.js` compiled. */
export function siblingModule(callerUrl: string, name: string): URL {
  return new URL(`./${name}${path.extname(new URL(callerUrl).pathname)}`, callerUrl);
}
