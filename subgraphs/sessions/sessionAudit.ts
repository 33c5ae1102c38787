import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { parse } from 'graphql';
import type { AuditEventRecord } from '../../lib/auditEventRecord.js';
import type { InternalTokens } from '../../lib/identity.js';
import { asSystem, createInternalClient } from '../../lib/internalClient.js';
import type { Logger } from '../../lib/logging.js';

/**
 * The audit log's entries for `/v1/sessions` (subgraphs/audit/README.md): the Kubernetes API requests that
 * change something or open a stream into a pod (exec, attach, port-forward) never pass the gateway's
 * GraphQL, so the proxy records them itself, once admitted. What is kept: the method and the path without
 * its query (an exec's command is in the query), never a header or a body.
 */
export interface SessionAuditEntry {
  requestId: string;
  userId: string;
  organizationId: string | null;
  projectId: string | null;
  clientAddress: string | null;
  clusterId: string;
  method: string;
  /** The Kubernetes API path, without its query. */
  path: string;
  upgrade: boolean;
}

export type SessionAudit = (entry: SessionAuditEntry) => void;

const RECORD = parse('mutation RecordSessionAudit($events: [AuditEventInput!]!) { recordAuditEvents(events: $events) }') as TypedDocumentNode<
  { recordAuditEvents: number },
  { events: AuditEventRecord[] }
>;

/**
 * Sends each entry to the audit subgraph as the system, without making the request wait: these requests
 * are few (an exec, a pod deleted), so one call each; a failure is logged, the request goes on.
 */
export function sessionAuditTo(url: () => string, tokens: InternalTokens, logger: Logger): SessionAudit {
  const client = createInternalClient({ subgraph: 'audit', url, tokens });
  return (entry) => {
    const event: AuditEventRecord = {
      occurredAt: new Date().toISOString(),
      requestId: entry.requestId,
      userId: entry.userId,
      apiKeyId: null,
      organizationId: entry.organizationId,
      projectId: entry.projectId,
      clientAddress: entry.clientAddress,
      kind: entry.upgrade ? 'session-stream' : 'session-write',
      operationName: `${entry.method} /v1/sessions/${entry.clusterId}${entry.path}`.slice(0, 500),
      actions: [{ field: entry.upgrade ? 'sessionStream' : 'sessionWrite', arguments: [{ name: 'clusterId', id: entry.clusterId }] }],
      outcome: 'OK',
    };
    client
      .request(asSystem(entry.requestId), RECORD, { events: [event] })
      .catch((err: unknown) => logger.error({ err, requestId: entry.requestId }, 'audit entry of a sessions request not written'));
  };
}
