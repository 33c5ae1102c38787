import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type DocumentNode } from 'graphql';
import { MarinerError } from './errors.js';
import { graphqlRequest } from './graphqlClient.js';
import { INTERNAL_TOKEN_HEADER, type Identity, type InternalTokens, type Worker } from './identity.js';

/**
 * Whom a call to a subgraph is made as; the subgraph applies its policy and ownership checks to that
 * identity, exactly as for a call the gateway makes (DESIGN §3: subgraphs own their data):
 * - a caller: the identity of the request being served (or of the one a background task acts for,
 *   such as a job's creator), so it reaches only what they could reach themselves;
 * - the system: the platform's own lookups (credentials, cluster access, model owners), which only
 *   fields whose rule admits system calls (`isGatewaySystem`) answer;
 * - a worker: a cluster agent, for the worker API.
 */
export type CallAs =
  | { kind: 'caller'; requestId: string; identity: Identity | null }
  | { kind: 'system'; requestId: string }
  | { kind: 'worker'; requestId: string; worker: Worker };

/** As the caller of a request (a subgraph's context has both fields). */
export function asCaller(caller: { requestId: string; identity: Identity | null }): CallAs {
  return { kind: 'caller', requestId: caller.requestId, identity: caller.identity };
}

/** As the system; `requestId` names the request or the task, for the logs. */
export function asSystem(requestId: string): CallAs {
  return { kind: 'system', requestId };
}

/** As a cluster agent. */
export function asWorker(requestId: string, worker: Worker): CallAs {
  return { kind: 'worker', requestId, worker };
}

/** A subgraph that does not answer within this is down: the call fails instead of hanging its caller. */
export const DEFAULT_INTERNAL_TIMEOUT_MS = 10_000;

export interface InternalClientOptions {
  /** The subgraph called (schema/subgraphs.ts names): the audience of the tokens minted for it. */
  subgraph: string;
  /** Where it runs; a function when that is known only once it has started. */
  url: string | (() => string);
  tokens: InternalTokens;
  /** Defaults to DEFAULT_INTERNAL_TIMEOUT_MS. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Ends the call early (the caller is stopping); the timeout holds as well. */
  signal?: AbortSignal;
  /** This call's timeout, instead of the client's. */
  timeoutMs?: number;
}

/**
 * One subgraph, called over HTTP with an internal identity token minted per call, as the caller, the
 * system or a worker. Documents are typed (TypedDocumentNode): the operations a folder sends to
 * subgraph X live in its `operations/X.graphql`, and graphql-codegen (codegen.ts) validates them
 * against schema/X.graphql and generates their result and variable types into
 * `generated/XOperations.ts`, so `npm run check` fails when a call no longer fits the schema.
 */
export interface InternalClient {
  readonly subgraph: string;
  /**
   * Runs the operation. A GraphQL error is thrown as a MarinerError with its code (lib/graphqlClient.ts),
   * so NOT_FOUND or FORBIDDEN from the subgraph reach the caller as such; a transport failure or a
   * timeout as a plain Error naming the subgraph.
   */
  request<TResult, TVariables extends Record<string, unknown>>(
    as: CallAs,
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
    options?: CallOptions,
  ): Promise<TResult>;
}

/** Each document is printed once: the generated ones are constants. */
const printed = new WeakMap<DocumentNode, string>();

function textOf(document: DocumentNode): string {
  let text = printed.get(document);
  if (text === undefined) {
    text = print(document);
    printed.set(document, text);
  }
  return text;
}

export function createInternalClient(options: InternalClientOptions): InternalClient {
  const { subgraph, tokens } = options;
  const urlOf = typeof options.url === 'function' ? options.url : () => options.url as string;
  const mint = (as: CallAs) =>
    as.kind === 'caller'
      ? tokens.mint(subgraph, as.requestId, as.identity)
      : as.kind === 'system'
        ? tokens.mint(subgraph, as.requestId, null, true)
        : tokens.mint(subgraph, as.requestId, null, false, as.worker);
  return {
    subgraph,
    async request<TResult, TVariables extends Record<string, unknown>>(
      as: CallAs,
      document: TypedDocumentNode<TResult, TVariables>,
      variables: TVariables,
      call: CallOptions = {},
    ): Promise<TResult> {
      const timeoutMs = call.timeoutMs ?? options.timeoutMs ?? DEFAULT_INTERNAL_TIMEOUT_MS;
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
      const headers = { [INTERNAL_TOKEN_HEADER]: await mint(as) };
      try {
        return await graphqlRequest<TResult>(urlOf(), textOf(document), variables, headers, signal);
      } catch (error) {
        if (error instanceof MarinerError || call.signal?.aborted) throw error;
        if (timeout.aborted) throw new Error(`the ${subgraph} subgraph did not answer within ${timeoutMs} ms`, { cause: error });
        throw new Error(`the call to the ${subgraph} subgraph failed: ${(error as Error).message}`, { cause: error });
      }
    },
  };
}
