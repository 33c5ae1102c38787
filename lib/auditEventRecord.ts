/**
 * One entry of the audit log as the gateway records it (gateway/audit.ts, one per mutation) and the audit
 * component stores it (subgraphs/audit/store.ts, table `audit_events`): the wire shape of
 * schema/audit.graphql's AuditEventInput, shared here because the two layers may not import each other.
 * What it holds is chosen so that no secret can land in it (gateway/audit.ts): argument NAMES, and a
 * value only for an id.
 */
export interface AuditEventRecord {
  occurredAt: string;
  requestId: string;
  userId: string | null;
  apiKeyId: string | null;
  organizationId: string | null;
  projectId: string | null;
  clientAddress: string | null;
  /** `mutation` (the gateway's), `session-stream` or `session-write` (the sessions proxy's: docs/operations-audit.md). */
  kind: string;
  operationName: string | null;
  actions: AuditAction[];
  /** `OK`, or the first error's code. */
  outcome: string;
}

/** One top-level field of an operation, as AuditActionInput. */
export interface AuditAction {
  field: string;
  arguments: AuditArgument[];
}

/** One argument of an action, as AuditArgumentInput: its name, and its value only when it is an id. */
export interface AuditArgument {
  name: string;
  id: string | null;
}
