import { Readable } from 'node:stream';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Identity, InternalTokens } from '../../lib/identity.js';
import { asCaller, createInternalClient } from '../../lib/internalClient.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import {
  BatchFileAbandonedDocument,
  BatchFileCompletionDocument,
  BatchFileUploadDocument,
  BatchInputFileDocument,
  type BatchInputFileQuery,
} from './generated/filesOperations.js';
import { BatchRecordResponseDocument, BatchStoredResponseDocument } from './generated/responsesOperations.js';
import { BatchCreatorKeysDocument } from './generated/usersOperations.js';

/** Who a call is made for: a request's caller, or (the worker) the batch's creator. */
export interface Caller {
  requestId: string;
  identity: Identity | null;
}

export type InputFile = NonNullable<BatchInputFileQuery['file']>;

/** The files subgraph, asked as the caller: it applies `api.files` and project ownership. */
export interface BatchFiles {
  file(caller: Caller, id: string): Promise<InputFile | null>;
  /** A new File of the caller's project (purpose batch_output) holding `lines`; its id. */
  write(caller: Caller, filename: string, lines: AsyncIterable<string>): Promise<string>;
}

/** The users subgraph, asked as the batch's creator. */
export interface BatchCreators {
  /** Whether the creator's API key still exists (it was not deleted). */
  apiKeyExists(caller: Caller, id: string): Promise<boolean>;
}

/** The responses subgraph, asked as the batch's creator. */
export interface BatchResponses {
  /**
   * Stores a finished response of a `/v1/responses` line (`store`, the default) in the creator's project;
   * false when a response of that id is already stored (the line's, stored by an earlier run of it).
   */
  record(caller: Caller, response: Record<string, unknown>, inputItems: Record<string, unknown>[]): Promise<boolean>;
  /** The stored response of that id in the creator's project (its body), or null. */
  stored(caller: Caller, id: string): Promise<Record<string, unknown> | null>;
}

export function createBatchResponses(options: { url: () => string; tokens: InternalTokens }): BatchResponses {
  const responses = createInternalClient({ subgraph: 'responses', url: options.url, tokens: options.tokens });
  return {
    async record(caller, response, inputItems) {
      try {
        await responses.request(asCaller(caller), BatchRecordResponseDocument, { input: { response, inputItems } });
        return true;
      } catch (error) {
        if (error instanceof MarinerError && error.code === ErrorCode.CONFLICT) return false;
        throw error;
      }
    },
    async stored(caller, id) {
      const { response } = await responses.request(asCaller(caller), BatchStoredResponseDocument, { id });
      return (response?.body as Record<string, unknown> | undefined) ?? null;
    },
  };
}

export function createBatchFiles(options: { url: () => string; tokens: InternalTokens; objectStore: ObjectStore }): BatchFiles {
  const files = createInternalClient({ subgraph: 'files', url: options.url, tokens: options.tokens });
  return {
    file: async (caller, id) => (await files.request(asCaller(caller), BatchInputFileDocument, { id })).file,
    async write(caller, filename, lines) {
      const as = asCaller(caller);
      const upload = (await files.request(as, BatchFileUploadDocument, { input: { filename, purpose: 'batch_output' } })).beginFileUpload;
      try {
        const bytes = Readable.from(
          (async function* () {
            for await (const line of lines) yield Buffer.from(`${line}\n`);
          })(),
        );
        await options.objectStore.put(upload.objectKey, bytes, { maxBytes: upload.maxBytes });
        return (await files.request(as, BatchFileCompletionDocument, { input: { id: upload.id, purpose: 'batch_output' } })).completeFileUpload.id;
      } catch (error) {
        await files.request(as, BatchFileAbandonedDocument, { id: upload.id }).catch(() => undefined);
        throw error;
      }
    },
  };
}

export function createBatchCreators(options: { url: () => string; tokens: InternalTokens }): BatchCreators {
  const users = createInternalClient({ subgraph: 'users', url: options.url, tokens: options.tokens });
  return {
    async apiKeyExists(caller, id) {
      let after: string | null = null;
      for (;;) {
        let page;
        try {
          page = (await users.request(asCaller(caller), BatchCreatorKeysDocument, { after })).apiKeys;
        } catch (error) {
          // The project is gone, or the creator is no longer let into it: the key acts for nothing there.
          if (error instanceof MarinerError && ([ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.UNAUTHENTICATED] as string[]).includes(error.code))
            return false;
          throw error;
        }
        if (page.items.some((key) => key.id === id)) return true;
        if (!page.hasMore || page.items.length === 0) return false;
        after = page.items.at(-1)!.id;
      }
    },
  };
}
