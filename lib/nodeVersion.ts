/**
 * Which Node.js runs Mariner. Node 24 LTS is what it is built and tested on (the image, CI), Node 22
 * LTS is supported. Node 20 reached its end of life in April 2026: it still starts, from 20.19 (the
 * first 20.x that loads ES modules with require(), which dependencies rely on), with a warning saying
 * so; anything older is refused. bin/checkNodeVersion.ts applies this before anything else loads.
 */

/** The release Mariner is built and tested on. */
export const RECOMMENDED_NODE_MAJOR = 24;
/** The oldest release line that is supported (not past its end of life). */
export const SUPPORTED_NODE_MAJOR = 22;
/** The oldest version that starts at all (with a warning). */
export const MINIMUM_NODE_VERSION = '20.19.0';

const HOW_TO_UPGRADE = `Install Node.js ${RECOMMENDED_NODE_MAJOR} LTS: https://nodejs.org/en/download (or \`nvm install ${RECOMMENDED_NODE_MAJOR}\`; this repository's .nvmrc names it).`;

export type NodeVersionVerdict = { action: 'refuse' | 'warn'; message: string };

function parse(version: string): [number, number, number] {
  const [major = 0, minor = 0, patch = 0] = version
    .replace(/^v/, '')
    .split('.')
    .map((part) => Number.parseInt(part, 10) || 0);
  return [major, minor, patch];
}

function atLeast(version: string, minimum: string): boolean {
  const [a, b] = [parse(version), parse(minimum)];
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

/** Nothing for a supported Node; otherwise whether to refuse or warn, and what to tell the user. */
export function nodeVersionVerdict(version: string): NodeVersionVerdict | undefined {
  const [major] = parse(version);
  if (!atLeast(version, MINIMUM_NODE_VERSION)) {
    return {
      action: 'refuse',
      message: `Node.js ${version} is too old for Mariner: it runs on Node.js ${RECOMMENDED_NODE_MAJOR} LTS (${SUPPORTED_NODE_MAJOR} is supported; ${MINIMUM_NODE_VERSION} is the oldest that starts at all). ${HOW_TO_UPGRADE}`,
    };
  }
  // 21 and 23 are short-lived odd releases, both past their end of life too.
  if (major < SUPPORTED_NODE_MAJOR || major === 23) {
    return {
      action: 'warn',
      message: `warning: Node.js ${version} is past its end of life (no more security fixes) and will stop being able to run Mariner; it is built and tested on Node.js ${RECOMMENDED_NODE_MAJOR} LTS (${SUPPORTED_NODE_MAJOR} is supported). ${HOW_TO_UPGRADE}`,
    };
  }
  return undefined;
}
