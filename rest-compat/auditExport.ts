import type { ServerResponse } from 'node:http';
import type { AuditEventRecord } from '../lib/auditEventRecord.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import type { Handler, Route } from './router.js';

/**
 * `GET /v1/audit/events/export?format=jsonl|csv&from&to[&organization_id]` (docs/operations-audit.md): an
 * organization's audit log as a download, for its OWNERS only — the same GraphQL `auditEvents` the gateway
 * authorizes (anyone else gets 403, an owner naming another organization too), paged through internally
 * (100 entries a page) and streamed as the pages arrive, newest first. The first page is read before the
 * answer starts, so a refusal is an ordinary error answer; a failure later cuts the download (no partial
 * file passes for a whole one: a complete JSON-lines file ends with a newline, a CSV file likewise).
 */

const PAGE = 100;

const AUDIT_EVENTS = `query AuditExport($filter: AuditEventFilter, $limit: Int, $after: String) {
  auditEvents(filter: $filter, limit: $limit, after: $after) {
    items { id occurredAt requestId userId apiKeyId organizationId projectId clientAddress kind operationName outcome actions { field arguments { name id } } }
    hasMore
  }
}`;

/** An entry as the audit query answers it: the recorded shape (lib/auditEventRecord.ts) and its id. */
type AuditEvent = AuditEventRecord & { id: string };

interface AuditPage {
  auditEvents: { items: AuditEvent[]; hasMore: boolean };
}

/** The CSV file's columns, in order (actions as JSON in one column). */
const CSV_COLUMNS = [
  'id',
  'occurred_at',
  'request_id',
  'user_id',
  'api_key_id',
  'organization_id',
  'project_id',
  'client_address',
  'kind',
  'operation_name',
  'outcome',
  'actions',
] as const;

/** One CSV field (RFC 4180), a value a spreadsheet would run as a formula made text first. */
export function csvField(value: string | null): string {
  if (value === null) return '';
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvLine(e: AuditEvent): string {
  const values = [
    e.id,
    e.occurredAt,
    e.requestId,
    e.userId,
    e.apiKeyId,
    e.organizationId,
    e.projectId,
    e.clientAddress,
    e.kind,
    e.operationName,
    e.outcome,
    JSON.stringify(e.actions),
  ];
  return `${values.map(csvField).join(',')}\r\n`;
}

function jsonLine(e: AuditEvent): string {
  return `${JSON.stringify({
    id: e.id,
    occurred_at: e.occurredAt,
    request_id: e.requestId,
    user_id: e.userId,
    api_key_id: e.apiKeyId,
    organization_id: e.organizationId,
    project_id: e.projectId,
    client_address: e.clientAddress,
    kind: e.kind,
    operation_name: e.operationName,
    outcome: e.outcome,
    actions: e.actions,
  })}\n`;
}

/** `from`/`to`: an ISO 8601 date-time or Unix seconds; null when absent. */
export function instantParam(url: URL, name: string): string | null {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return null;
  const time = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw);
  if (!Number.isFinite(time)) throw RestError.badRequest(`${name} must be an ISO 8601 date-time or Unix seconds`, name);
  return new Date(time).toISOString();
}

/** Writes `text`, waiting while the client's buffer is full; false when the client left. */
function write(res: ServerResponse, text: string): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(text)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', drained);
      res.off('close', closed);
      resolve(ok);
    };
    const drained = () => done(true);
    const closed = () => done(false);
    res.once('drain', drained);
    res.once('close', closed);
  });
}

export function auditExportRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  const exportEvents: Handler = async (req, res, ctx) => {
    const format = ctx.url.searchParams.get('format') ?? 'jsonl';
    if (format !== 'jsonl' && format !== 'csv') throw RestError.badRequest('format must be jsonl or csv', 'format');
    const since = instantParam(ctx.url, 'from');
    const until = instantParam(ctx.url, 'to');
    if (since && until && since >= until) throw RestError.badRequest('from must be before to', 'from');
    const organizationId = ctx.url.searchParams.get('organization_id') || null;
    const filter = { since, until, ...(organizationId ? { organizationId } : {}) };
    const page = (after: string | null) => gql<AuditPage>(req, ctx, AUDIT_EVENTS, { filter, limit: PAGE, after });

    // The first page before the answer starts: a caller who is not an owner is refused with 403 here.
    let current = (await page(null)).auditEvents;
    const stamp = new Date().toISOString().slice(0, 10);
    const name = `audit-${(organizationId ?? current.items[0]?.organizationId ?? 'organization').replace(/[^A-Za-z0-9_-]/g, '_')}-${stamp}.${format}`;
    res.writeHead(200, {
      ...ctx.headers,
      'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="${name}"`,
      'cache-control': 'no-store',
    });
    const line = format === 'csv' ? csvLine : jsonLine;
    if (format === 'csv' && !(await write(res, `${CSV_COLUMNS.join(',')}\r\n`))) return;
    for (;;) {
      for (const event of current.items) if (!(await write(res, line(event)))) return;
      const last = current.items.at(-1);
      if (!current.hasMore || !last) break;
      current = (await page(last.id)).auditEvents;
    }
    res.end();
  };

  return [{ method: 'GET', path: '/v1/audit/events/export', handler: exportEvents }];
}
