import type { ApiClient } from './client.js';

/** Every item of a cursor-paginated list (`after` = the last item's id, `hasMore`), page after page. */
export async function allPages<T extends { id: string }>(
  page: (after: string | null) => Promise<{ items: T[]; hasMore: boolean }>,
  max = 10_000,
): Promise<T[]> {
  const items: T[] = [];
  let after: string | null = null;
  for (;;) {
    const next = await page(after);
    items.push(...next.items);
    if (!next.hasMore || !next.items.length || items.length >= max) return items;
    after = next.items[next.items.length - 1]!.id;
  }
}

/** What a list query takes besides its page: `declare` its variables' types, `args` its arguments, and their `variables`. */
export interface ListQuery {
  declare?: string;
  args?: string;
  variables?: Record<string, unknown>;
}

/**
 * Every item of the GraphQL list `field` (`field(after:, limit:) { items { <fields> } hasMore }`), page after page:
 * `listAll<FileView>(client, 'files', FILE_FIELDS, { declare: '$purpose: String', args: 'purpose: $purpose', variables: { purpose } })`.
 */
export function listAll<T extends { id: string }>(client: ApiClient, field: string, fields: string, query: ListQuery = {}): Promise<T[]> {
  const declared = ['$after: String', ...(query.declare ? [query.declare] : [])].join(', ');
  const args = [...(query.args ? [query.args] : []), 'after: $after', 'limit: 100'].join(', ');
  const text = `query (${declared}) { ${field}(${args}) { items { ${fields} } hasMore } }`;
  return allPages((after) => client.graphql<Record<string, { items: T[]; hasMore: boolean }>>(text, { ...query.variables, after }).then((r) => r[field]!));
}
