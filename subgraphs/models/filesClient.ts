import { graphqlRequest } from '../../lib/graphqlClient.js';
import { INTERNAL_TOKEN_HEADER, type InternalTokens } from '../../lib/identity.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';

/** What the models subgraph needs of a File: where its bytes are, and its name (for the format). */
export interface ProjectFile {
  id: string;
  filename: string;
  objectStorePath: string;
  status: string;
}

/** The files subgraph, asked on behalf of the caller (DESIGN §3: an internal token with their identity). */
export interface FilesClient {
  /** The file in the caller's project, or null when it has none with this id. */
  file(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<ProjectFile | null>;
}

const FILE = `query ModelSourceFile($id: ID!) { file(id: $id) { id filename objectStorePath status } }`;

/** A lookup slower than this is an outage of the files subgraph, not a reason to hang the mutation. */
const TIMEOUT_MS = 10_000;

/**
 * The models subgraph does not own files: it asks the files subgraph, which applies its own policy
 * (`api.files.read`) and project ownership to the caller, so a model can only come from a file the
 * caller could read anyway.
 */
export function createFilesClient(options: { url: string; tokens: InternalTokens }): FilesClient {
  return {
    async file(caller, id) {
      const token = await options.tokens.mint('files', caller.requestId, caller.identity);
      const data = await graphqlRequest<{ file: ProjectFile | null }>(
        options.url,
        FILE,
        { id },
        { [INTERNAL_TOKEN_HEADER]: token },
        AbortSignal.timeout(TIMEOUT_MS),
      );
      return data.file;
    },
  };
}
