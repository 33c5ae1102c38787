import type { InternalTokens } from '../../lib/identity.js';
import { asCaller, createInternalClient } from '../../lib/internalClient.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import { ModelSourceFileDocument, type ModelSourceFileQuery } from './generated/filesOperations.js';

/** What the models subgraph needs of a File: where its bytes are, and its name (for the format). */
export type ProjectFile = NonNullable<ModelSourceFileQuery['file']>;

/** The files subgraph, asked on behalf of the caller (DESIGN §3: an internal token with their identity). */
export interface FilesClient {
  /** The file in the caller's project, or null when it has none with this id. */
  file(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<ProjectFile | null>;
}

/**
 * The models subgraph does not own files: it asks the files subgraph (operations/files.graphql), which
 * applies its own policy (`api.files.read`) and project ownership to the caller, so a model can only
 * come from a file the caller could read anyway.
 */
export function createFilesClient(options: { url: string; tokens: InternalTokens }): FilesClient {
  const files = createInternalClient({ subgraph: 'files', url: options.url, tokens: options.tokens });
  return {
    file: async (caller, id) => (await files.request(asCaller(caller), ModelSourceFileDocument, { id })).file,
  };
}
