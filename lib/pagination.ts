import type { Knex } from 'knex';
import { badInput } from './errors.js';

/** Cursor pagination as every Mariner list does it: `after` (an item id), `limit`, `hasMore`. */
export interface PageArgs {
  after?: string | null;
  limit?: number | null;
  order?: 'asc' | 'desc' | null;
}

export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

export const DEFAULT_PAGE_LIMIT = 20;
export const MAX_PAGE_LIMIT = 100;

export function pageLimit(limit: number | null | undefined): number {
  if (limit === null || limit === undefined) return DEFAULT_PAGE_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw badInput(`limit must be between 1 and ${MAX_PAGE_LIMIT}`, 'limit');
  }
  return limit;
}

/**
 * Applies the cursor to a query over `table` ordered by (created_at, key); `key` defaults to `id`. The cursor row is looked up
 * in the same base query, so a cursor from another tenant or project simply finds nothing.
 * Runs the query: fetches limit + 1 rows to know whether there is more.
 */
export async function paginate<Row>(base: () => Knex.QueryBuilder, table: string, args: PageArgs, key = 'id'): Promise<Page<Row>> {
  const limit = pageLimit(args.limit);
  const order = args.order ?? 'asc';
  const comparator = order === 'asc' ? '>' : '<';
  const query = base().orderBy([
    { column: `${table}.created_at`, order },
    { column: `${table}.${key}`, order },
  ]);
  if (args.after) {
    // Compare against the cursor row inside SQL: timestamps have microseconds, JS Dates only ms.
    const cursor = base()
      .clearSelect()
      .where(`${table}.${key}`, args.after)
      .select({ cursor_created_at: `${table}.created_at`, cursor_key: `${table}.${key}` });
    if (!(await cursor.clone().first())) throw badInput(`after: no item with id ${args.after}`, 'after');
    query.whereRaw(`(??, ??) ${comparator} (select c.cursor_created_at, c.cursor_key from (?) as c)`, [`${table}.created_at`, `${table}.${key}`, cursor]);
  }
  const rows = (await query.limit(limit + 1)) as Row[];
  return { items: rows.slice(0, limit), hasMore: rows.length > limit };
}
