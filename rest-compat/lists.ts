import { MAX_PAGE_LIMIT } from '../lib/pagination.js';
import { RestError } from './errors.js';

/**
 * OpenAI list parameters (`after`, `limit`, `order`). OpenAI allows larger pages than Mariner's
 * limit: a larger `limit` is served as a full page with `has_more`, which the SDKs' auto-pagination
 * follows.
 */
export function listParams(url: URL, defaultOrder: 'asc' | 'desc') {
  const rawLimit = url.searchParams.get('limit');
  let limit = MAX_PAGE_LIMIT;
  if (rawLimit !== null) {
    const n = Number(rawLimit);
    if (!Number.isInteger(n) || n < 1) throw RestError.badRequest('limit must be a positive integer', 'limit');
    limit = Math.min(n, MAX_PAGE_LIMIT);
  }
  const order = url.searchParams.get('order') ?? defaultOrder;
  if (order !== 'asc' && order !== 'desc') throw RestError.badRequest('order must be asc or desc', 'order');
  return { after: url.searchParams.get('after'), limit, order: order === 'asc' ? 'ASC' : 'DESC' };
}

/** OpenAI API: a list object. */
export function toList<T extends { id: string }>(data: T[], hasMore: boolean) {
  // The spec wants first_id/last_id as strings even for an empty page.
  return { object: 'list' as const, data, has_more: hasMore, first_id: data[0]?.id ?? '', last_id: data.at(-1)?.id ?? '' };
}

/**
 * `after` / `limit` of a Mariner list that is oldest first and takes no order (the users subgraph's),
 * so `order=desc` is refused rather than ignored.
 */
export function oldestFirstListParams(url: URL) {
  const { after, limit, order } = listParams(url, 'asc');
  if (order !== 'ASC') throw RestError.badRequest('This list is ordered oldest first only (order=asc)', 'order');
  return { after, limit };
}

/** A page of a Mariner GraphQL list. */
export interface GraphQLPage<T> {
  items: T[];
  hasMore: boolean;
}

/** A list object whose cursor is not an `id` field (members page by user id). */
export function cursorList<T>(data: T[], hasMore: boolean, cursorOf: (item: T) => string) {
  return {
    object: 'list' as const,
    data,
    has_more: hasMore,
    first_id: data.length ? cursorOf(data[0]!) : '',
    last_id: data.length ? cursorOf(data.at(-1)!) : '',
  };
}
