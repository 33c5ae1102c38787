import { badInput, forbidden } from '../../lib/errors.js';
import type { AuditContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import type { AuditAction, AuditEventRow } from './store.js';

/** More than this in one call is refused: the gateway sends batches well under it. */
export const MAX_EVENTS_PER_BATCH = 1000;

/**
 * Whose log a caller reads: the organization named, else their current one; only an OWNER of it
 * (LLMariner's organization owner) may, so a member of another organization never sees these entries.
 */
function organizationOf(ctx: AuditContext, requested: string | null | undefined): string {
  const principal = ctx.identity?.principal;
  if (!principal) throw forbidden('The audit log needs an authenticated caller');
  const organizationId =
    requested ??
    ctx.identity?.project?.organizationId ??
    principal.organizations.find((o) => o.isDefault)?.organizationId ??
    principal.organizations[0]?.organizationId;
  if (!organizationId) throw badInput('filter.organizationId: the caller belongs to no organization', 'filter.organizationId');
  const owner = principal.organizations.some((o) => o.organizationId === organizationId && o.role === 'OWNER');
  if (!owner) throw forbidden(`Only an owner of organization ${organizationId} may read its audit log`);
  return organizationId;
}

/** Typed from schema/audit.graphql (codegen.ts: subgraphs/audit/generated/resolvers.ts). */
export const resolvers: Resolvers<AuditContext> = {
  Query: {
    async auditEvents(_parent, args, ctx) {
      const filter = args.filter ?? {};
      const organizationId = organizationOf(ctx, filter.organizationId);
      return ctx.store.list(
        {
          organizationId,
          projectId: filter.projectId ?? null,
          userId: filter.userId ?? null,
          apiKeyId: filter.apiKeyId ?? null,
          field: filter.field ?? null,
          requestId: filter.requestId ?? null,
          since: filter.since ?? null,
          until: filter.until ?? null,
        },
        { after: args.after ?? null, limit: args.limit ?? null },
      );
    },
  },
  Mutation: {
    async recordAuditEvents(_parent, args, ctx) {
      // The policy admits the gateway's system calls only; checked again here, as every subgraph does.
      if (!ctx.system) throw forbidden('Only the gateway records audit entries');
      if (args.events.length > MAX_EVENTS_PER_BATCH) throw badInput(`at most ${MAX_EVENTS_PER_BATCH} entries per call`, 'events');
      const events = args.events.map((e) => ({
        ...e,
        userId: e.userId ?? null,
        apiKeyId: e.apiKeyId ?? null,
        organizationId: e.organizationId ?? null,
        projectId: e.projectId ?? null,
        clientAddress: e.clientAddress ?? null,
        operationName: e.operationName ?? null,
        actions: e.actions.map((a) => ({ field: a.field, arguments: a.arguments.map((g) => ({ name: g.name, id: g.id ?? null })) })),
      }));
      return ctx.store.append(events);
    },
  },
  AuditEvent: {
    occurredAt: (row: AuditEventRow) => new Date(row.created_at).toISOString(),
    requestId: (row: AuditEventRow) => row.request_id,
    userId: (row: AuditEventRow) => row.user_id,
    apiKeyId: (row: AuditEventRow) => row.api_key_id,
    organizationId: (row: AuditEventRow) => row.organization_id,
    projectId: (row: AuditEventRow) => row.project_id,
    clientAddress: (row: AuditEventRow) => row.client_address,
    operationName: (row: AuditEventRow) => row.operation_name,
    actions: (row: AuditEventRow) => (typeof row.actions === 'string' ? (JSON.parse(row.actions) as AuditAction[]) : row.actions),
  },
};
