/**
 * bin/mariner.ts's first import, so this runs before any other module of Mariner or its dependencies
 * is evaluated: a Node.js that is too old is refused with a message that says what to install, one
 * past its end of life gets a warning (lib/nodeVersion.ts). Written to stderr, where a pod's log or a
 * terminal shows it; stdout stays the command's own.
 */
import { nodeVersionVerdict } from '../lib/nodeVersion.js';

const verdict = nodeVersionVerdict(process.versions.node);
if (verdict) {
  process.stderr.write(`mariner: ${verdict.message}\n`);
  if (verdict.action === 'refuse') process.exit(1);
}
