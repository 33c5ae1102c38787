import type { IncomingMessage } from 'node:http';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, parse, valueFromASTUntyped, type DocumentNode, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
import type { AuditAction, AuditArgument, AuditEventRecord } from '../lib/auditEventRecord.js';
import type { Identity, InternalTokens } from '../lib/identity.js';
import { asSystem, createInternalClient } from '../lib/internalClient.js';
import type { Logger } from '../lib/logging.js';
import type { GatewayContext } from './context.js';

/**
 * The audit log's recording side (subgraphs/audit/README.md): an Apollo plugin that turns every mutation
 * the gateway answers into one entry, and a recorder that hands entries to the audit subgraph in batches,
 * off the request's path. REST routes reach the platform as GraphQL operations on this gateway, so they
 * are recorded here once, like any GraphQL client's; operations over WebSocket run through the same
 * Apollo plugins (gateway/index.ts executeOperation).
 *
 * What an entry holds is chosen so that no secret can land in it: the operation name, each top-level
 * field, and each argument's NAME; a value only when the argument is an id (`id`, `...Id`, `...Ids`).
 * API key secrets, passwords, file contents and prompts never travel in an argument so named.
 */

export type { AuditAction, AuditArgument, AuditEventRecord };

/** An argument whose name says it holds an id; only these keep their value. */
const ID_ARGUMENT = /^(id|ids|[A-Za-z0-9_]*(Id|Ids|_id|_ids))$/;
const MAX_ID_LENGTH = 200;
const MAX_ARGUMENTS_PER_ACTION = 64;
const MAX_DEPTH = 4;
const RETRY_AFTER_FAILURE_MS = 5_000;

function idValue(value: unknown): string | null {
  if (typeof value === 'string') return value.slice(0, MAX_ID_LENGTH);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(',').slice(0, MAX_ID_LENGTH);
  return null;
}

/** The argument names of one value (nested input objects as `input.projectId`), with ids' values. */
function argumentsOf(name: string, value: unknown, out: AuditArgument[], depth: number): void {
  if (out.length >= MAX_ARGUMENTS_PER_ACTION) return;
  const leaf = name.slice(name.lastIndexOf('.') + 1);
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && depth < MAX_DEPTH) {
    out.push({ name, id: null });
    for (const [key, inner] of Object.entries(value)) argumentsOf(`${name}.${key}`, inner, out, depth + 1);
    return;
  }
  out.push({ name, id: ID_ARGUMENT.test(leaf) ? idValue(value) : null });
}

/** The top-level fields of a mutation (through fragments), each with its arguments' names and ids. */
export function actionsOf(document: DocumentNode, operation: OperationDefinitionNode, variables: Record<string, unknown> = {}): AuditAction[] {
  const fragments = new Map(document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])));
  const actions: AuditAction[] = [];
  const seenFragments = new Set<string>();
  const walk = (selectionSet: SelectionSetNode): void => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.INLINE_FRAGMENT) walk(selection.selectionSet);
      else if (selection.kind === Kind.FRAGMENT_SPREAD) {
        const fragment = fragments.get(selection.name.value);
        if (fragment && !seenFragments.has(fragment.name.value)) {
          seenFragments.add(fragment.name.value);
          walk(fragment.selectionSet);
        }
      } else if (selection.name.value !== '__typename') {
        const args: AuditArgument[] = [];
        for (const argument of selection.arguments ?? []) {
          argumentsOf(argument.name.value, valueFromASTUntyped(argument.value, variables), args, 0);
        }
        actions.push({ field: selection.name.value, arguments: args });
      }
    }
  };
  walk(operation.selectionSet);
  return actions;
}

/** A forwarded client address as the REST layer sets it: an IPv4 or IPv6 literal. */
const ADDRESS = /^[0-9A-Fa-f:.]{2,45}$/;

/**
 * The client's address: the socket's peer, except that a caller on loopback (the REST layer of this
 * process, which reaches the gateway there) may name its own caller's in `x-mariner-client-address`. The
 * REST layer forwards only an allow-list of headers, so a REST caller cannot set it; a direct caller from
 * elsewhere is never believed.
 */
export function clientAddressOf(req: IncomingMessage): string | null {
  const peer = req.socket.remoteAddress ?? null;
  const forwarded = req.headers['x-mariner-client-address'];
  const loopback = peer === '127.0.0.1' || peer === '::1' || peer === '::ffff:127.0.0.1';
  if (loopback && typeof forwarded === 'string' && ADDRESS.test(forwarded)) return forwarded;
  return peer;
}

/** The organization an entry belongs to: the request's project's, else the caller's own that an argument names, else their default. */
function organizationOf(identity: Identity | null, actions: readonly AuditAction[]): string | null {
  if (!identity) return null;
  const { principal, project } = identity;
  if (project) return project.organizationId;
  if (principal.apiKey) return principal.apiKey.organizationId;
  const named = actions.flatMap((a) => a.arguments).find((a) => a.name.endsWith('organizationId') && a.id !== null)?.id;
  if (named && principal.organizations.some((o) => o.organizationId === named)) return named;
  return principal.organizations.find((o) => o.isDefault)?.organizationId ?? principal.organizations[0]?.organizationId ?? null;
}

export interface AuditEntryInput {
  document: DocumentNode;
  operation: OperationDefinitionNode;
  variables: Record<string, unknown> | undefined;
  context: Pick<GatewayContext, 'requestId' | 'identity' | 'clientAddress'>;
  /** The first error's code, or undefined when the operation succeeded. */
  errorCode: string | undefined;
  occurredAt?: Date;
}

/** One entry for one mutation. */
export function auditEntryOf(input: AuditEntryInput): AuditEventRecord {
  const { identity } = input.context;
  const actions = actionsOf(input.document, input.operation, input.variables ?? {});
  return {
    occurredAt: (input.occurredAt ?? new Date()).toISOString(),
    requestId: input.context.requestId,
    userId: identity?.principal.userId ?? null,
    apiKeyId: identity?.principal.apiKey?.id ?? null,
    organizationId: organizationOf(identity, actions),
    projectId: identity?.project?.projectId ?? identity?.principal.apiKey?.projectId ?? null,
    clientAddress: input.context.clientAddress ?? null,
    kind: 'mutation',
    operationName: input.operation.name?.value ?? null,
    actions,
    outcome: input.errorCode ?? 'OK',
  };
}

/**
 * Records every mutation the gateway answers, refused ones included (an audit log shows attempts), except
 * a cluster agent's successful reports (its refused calls are recorded, as user `worker:<cluster name>`):
 * in willSendResponse, which runs for every response once the operation was resolved. Operations that
 * did not parse or validate did nothing and are not recorded.
 */
export function createAuditPlugin(recorder: Pick<AuditRecorder, 'record'>): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ document, operation, request, response, contextValue }) {
          if (!document || !operation || operation.operation !== 'mutation') return;
          const errors = response.body.kind === 'single' ? response.body.singleResult.errors : undefined;
          const code = errors?.[0]?.extensions?.['code'];
          const errorCode = errors && errors.length > 0 ? (typeof code === 'string' ? code : 'INTERNAL') : undefined;
          // A cluster's agent reports its state many times a minute (reportRuntimes, appendJobLogs): the
          // cluster's status and the job logs keep those; only its refused calls are an audit matter.
          if (contextValue.worker && errorCode === undefined) return;
          const entry = auditEntryOf({ document, operation, variables: request.variables, context: contextValue, errorCode });
          if (contextValue.worker) entry.userId = `worker:${contextValue.worker.clusterName}`;
          recorder.record(entry);
        },
      };
    },
  };
}

/** Where batches go: the audit subgraph, called as the system. */
export type AuditSink = (events: AuditEventRecord[]) => Promise<void>;

const RECORD_AUDIT_EVENTS = parse('mutation RecordAuditEvents($events: [AuditEventInput!]!) { recordAuditEvents(events: $events) }') as TypedDocumentNode<
  { recordAuditEvents: number },
  { events: AuditEventRecord[] }
>;

export function auditSubgraphSink(url: string, tokens: InternalTokens): AuditSink {
  const client = createInternalClient({ subgraph: 'audit', url, tokens });
  return async (events) => {
    await client.request(asSystem('audit'), RECORD_AUDIT_EVENTS, { events });
  };
}

export interface AuditRecorderOptions {
  sink: AuditSink;
  logger: Logger;
  /** A batch is sent once this many entries wait, or `flushIntervalMs` after the first. */
  batchSize?: number;
  flushIntervalMs?: number;
  /** Entries kept while the audit subgraph is unreachable; past it the oldest are dropped, and logged. */
  maxBuffered?: number;
}

/**
 * Batches entries to the audit subgraph, off the request's path: a user's mutation never waits for, nor
 * fails because of, its audit entry. A failed batch is logged and kept for the next try (at most
 * `maxBuffered` entries, then the oldest are dropped and the loss logged as an error with its count), so a
 * short outage of the audit subgraph loses nothing; a gateway crash loses at most the last interval's.
 */
export class AuditRecorder {
  private queue: AuditEventRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxBuffered: number;
  private failing = false;

  constructor(private readonly options: AuditRecorderOptions) {
    this.batchSize = options.batchSize ?? 200;
    this.flushIntervalMs = options.flushIntervalMs ?? 100;
    this.maxBuffered = options.maxBuffered ?? 50_000;
  }

  record(event: AuditEventRecord): void {
    this.queue.push(event);
    this.trim();
    if (this.queue.length >= this.batchSize) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Sends everything waiting now (and waits for a batch in flight first). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.sending) await this.sending;
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.batchSize);
    this.sending = this.options
      .sink(batch)
      .then(() => {
        this.failing = false;
      })
      .catch((err: unknown) => {
        this.options.logger.error({ err, entries: batch.length }, 'audit entries not written yet; retrying');
        this.failing = true;
        this.queue.unshift(...batch);
        this.trim();
      })
      .finally(() => (this.sending = undefined));
    await this.sending;
    if (this.queue.length > 0 && !this.timer) {
      // After a failure, try again in seconds rather than at the batching interval.
      this.timer = setTimeout(() => void this.flush(), this.failing ? RETRY_AFTER_FAILURE_MS : this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Entries waiting to be written. */
  pending(): number {
    return this.queue.length;
  }

  /** Writes what is left (once more), for a gateway that stops. */
  async stop(): Promise<void> {
    await this.flush().catch(() => undefined);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private trim(): void {
    const excess = this.queue.length - this.maxBuffered;
    if (excess > 0) {
      this.queue.splice(0, excess);
      this.options.logger.error({ dropped: excess }, 'audit entries dropped: the audit subgraph has been unreachable too long');
    }
  }
}
