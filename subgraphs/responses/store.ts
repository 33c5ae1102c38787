import { isUniqueViolation, type Knex } from '../../lib/db.js';
import type { ProjectScope as FullScope } from '../../lib/identity.js';
import { pageLimit, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'responses';

/** OpenAI response statuses, as stored (the body's `status`). */
export type ResponseStatusValue = 'completed' | 'failed' | 'in_progress' | 'cancelled' | 'queued' | 'incomplete';

export interface ResponseRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  created_by: string;
  previous_response_id: string | null;
  model: string;
  status: ResponseStatusValue;
  /** The response object as /v1/responses answered it. */
  body: Record<string, unknown>;
  created_at: Date;
}

/** An input or output item, in OpenAI's shape (the resolvers read its typed fields from it). */
export interface ResponseItemModel {
  id: string;
  item: Record<string, unknown>;
}

/** The responses of one project. */
export type ProjectScope = Pick<FullScope, 'tenantId' | 'organizationId' | 'projectId'>;

/** One response of a chain, with its input items. */
export interface ChainLink {
  row: Pick<ResponseRow, 'id' | 'body'>;
  inputItems: ResponseItemModel[];
}

/** How far back a chain is followed: a longer conversation is cut at its oldest responses. */
export const MAX_CHAIN_LENGTH = 100;

/** All SQL of the responses subgraph. Every read is scoped to a project. */
export class ResponseStore {
  constructor(private readonly knex: Knex) {}

  private t(table: string): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table(table);
  }

  async response(scope: ProjectScope, id: string): Promise<ResponseRow | undefined> {
    return (await this.t('responses').where({ id, tenant_id: scope.tenantId, project_id: scope.projectId }).first()) as ResponseRow | undefined;
  }

  /** Stores a response and its input items in one transaction; false when its id is taken. */
  async insert(row: Omit<ResponseRow, 'created_at'>, inputItems: readonly ResponseItemModel[]): Promise<ResponseRow | null> {
    try {
      return await this.knex.transaction(async (trx) => {
        const [created] = await trx
          .withSchema(SCHEMA)
          .table('responses')
          .insert({ ...row, body: JSON.stringify(row.body) })
          .returning('*');
        if (inputItems.length > 0) {
          await trx
            .withSchema(SCHEMA)
            .table('response_input_items')
            .insert(inputItems.map((item, position) => ({ response_id: row.id, position, id: item.id, item: JSON.stringify(item.item) })));
        }
        return created as ResponseRow;
      });
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  async delete(scope: ProjectScope, id: string): Promise<boolean> {
    const deleted = (await this.t('responses').where({ id, tenant_id: scope.tenantId, project_id: scope.projectId }).delete().returning('id')) as unknown[];
    return deleted.length > 0;
  }

  /** A page of a response's input items in request order (or reversed); `after` is an item id of the same response. */
  async inputItems(responseId: string, page: PageArgs): Promise<Page<ResponseItemModel>> {
    const limit = pageLimit(page.limit);
    const order = page.order ?? 'asc';
    const query = this.t('response_input_items')
      .where({ response_id: responseId })
      .select('id', 'item')
      .orderBy('position', order)
      .limit(limit + 1);
    if (page.after) {
      // A cursor that is no item of this response finds nothing (null compares to nothing).
      const cursor = this.t('response_input_items').where({ response_id: responseId, id: page.after }).select('position').limit(1);
      query.where('position', order === 'asc' ? '>' : '<', cursor);
    }
    const rows = (await query) as ResponseItemModel[];
    return { items: rows.slice(0, limit), hasMore: rows.length > limit };
  }

  /**
   * The chain ending at a response, oldest first: it and the responses it continues, of the same
   * project only (a link to another project's id ends the chain), at most MAX_CHAIN_LENGTH of them.
   */
  async chain(scope: ProjectScope, id: string): Promise<ChainLink[]> {
    const { rows } = (await this.knex.raw(
      `with recursive chain as (
         select id, previous_response_id, body, 0 as depth from ?? where id = ? and tenant_id = ? and project_id = ?
         union all
         select r.id, r.previous_response_id, r.body, c.depth + 1 from ?? r join chain c on r.id = c.previous_response_id
         where r.tenant_id = ? and r.project_id = ? and c.depth < ?
       )
       select id, body, depth from chain order by depth desc`,
      [`${SCHEMA}.responses`, id, scope.tenantId, scope.projectId, `${SCHEMA}.responses`, scope.tenantId, scope.projectId, MAX_CHAIN_LENGTH - 1],
    )) as { rows: { id: string; body: Record<string, unknown>; depth: number }[] };
    if (rows.length === 0) return [];
    const items = (await this.t('response_input_items')
      .whereIn(
        'response_id',
        rows.map((r) => r.id),
      )
      .select('response_id', 'id', 'item')
      .orderBy(['response_id', 'position'])) as (ResponseItemModel & { response_id: string })[];
    return rows.map((row) => ({
      row: { id: row.id, body: row.body },
      inputItems: items.filter((i) => i.response_id === row.id).map(({ id: itemId, item }) => ({ id: itemId, item })),
    }));
  }
}
