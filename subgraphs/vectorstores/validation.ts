import { badInput } from '../../lib/errors.js';

/** OpenAI API: Metadata — at most 16 pairs, keys ≤ 64 characters, string values ≤ 512. */
export function validMetadata(value: unknown, field = 'metadata'): Record<string, string> {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw badInput(`${field} must be an object of string values`, field);
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 16) throw badInput(`${field} holds at most 16 pairs`, field);
  for (const [key, v] of entries) {
    if (key.length === 0 || key.length > 64) throw badInput(`${field}: keys are 1 to 64 characters`, field);
    if (typeof v !== 'string' || v.length > 512) throw badInput(`${field}.${key.slice(0, 64)} must be a string of at most 512 characters`, field);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

export type Attributes = Record<string, string | number | boolean>;

/** OpenAI API: VectorStoreFileAttributes — at most 16 pairs; strings ≤ 512, numbers or booleans. */
export function validAttributes(value: unknown, field = 'attributes'): Attributes | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw badInput(`${field} must be an object`, field);
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 16) throw badInput(`${field} holds at most 16 pairs`, field);
  for (const [key, v] of entries) {
    if (key.length === 0 || key.length > 64) throw badInput(`${field}: keys are 1 to 64 characters`, field);
    const ok = (typeof v === 'string' && v.length <= 512) || (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean';
    if (!ok) throw badInput(`${field}.${key.slice(0, 64)} must be a string (≤ 512 characters), a number or a boolean`, field);
  }
  return Object.fromEntries(entries) as Attributes;
}

export const MAX_NAME_LENGTH = 256;

export function validName(value: string, field = 'name'): string {
  const name = value.trim();
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) throw badInput(`${field} must be 1 to ${MAX_NAME_LENGTH} characters`, field);
  return name;
}

/** OpenAI API: VectorStoreExpirationAfter — anchor last_active_at, 1 to 365 days. */
export function validExpiration(value: { anchor: string; days: number }, field = 'expiresAfter'): number {
  if (value.anchor !== 'last_active_at') throw badInput(`${field}.anchor must be last_active_at`, `${field}.anchor`);
  if (!Number.isInteger(value.days) || value.days < 1 || value.days > 365) throw badInput(`${field}.days must be an integer from 1 to 365`, `${field}.days`);
  return value.days;
}

/** OpenAI API: ComparisonFilter and CompoundFilter (search `filters`). */
export type AttributeFilter =
  | { type: 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte'; key: string; value: string | number | boolean }
  | { type: 'in' | 'nin'; key: string; value: (string | number)[] }
  | { type: 'and' | 'or'; filters: AttributeFilter[] };

const COMPARISONS = new Set(['eq', 'ne', 'gt', 'gte', 'lt', 'lte']);
const MAX_FILTER_DEPTH = 8;

/** Checks a filter's shape; an error names where in the filter the problem is. */
export function validFilter(value: unknown, field = 'filters', depth = 0): AttributeFilter {
  if (depth > MAX_FILTER_DEPTH) throw badInput(`${field}: filters nest at most ${MAX_FILTER_DEPTH} deep`, 'filters');
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badInput(`${field} must be a comparison or compound filter object`, 'filters');
  const f = value as Record<string, unknown>;
  const type = f['type'] ?? 'eq';
  if (type === 'and' || type === 'or') {
    const filters = f['filters'];
    if (!Array.isArray(filters) || filters.length === 0) throw badInput(`${field}.filters must be a non-empty array`, 'filters');
    return { type, filters: filters.map((inner, i) => validFilter(inner, `${field}.filters[${i}]`, depth + 1)) };
  }
  const key = f['key'];
  if (typeof key !== 'string' || key.length === 0 || key.length > 64) throw badInput(`${field}.key must be an attribute name`, 'filters');
  const v = f['value'];
  if (type === 'in' || type === 'nin') {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' || typeof x === 'number'))
      throw badInput(`${field}.value must be an array of strings or numbers for ${type}`, 'filters');
    return { type, key, value: v as (string | number)[] };
  }
  if (typeof type !== 'string' || !COMPARISONS.has(type)) throw badInput(`${field}.type must be eq, ne, gt, gte, lt, lte, in, nin, and or or`, 'filters');
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw badInput(`${field}.value must be a string, number or boolean`, 'filters');
  if ((type === 'gt' || type === 'gte' || type === 'lt' || type === 'lte') && typeof v === 'boolean')
    throw badInput(`${field}.value: ${type} compares numbers or strings`, 'filters');
  return { type: type as 'eq', key, value: v };
}

/** Whether a file's attributes pass the filter. A missing attribute fails every comparison but ne and nin. */
export function matchesFilter(filter: AttributeFilter, attributes: Attributes | null): boolean {
  if ('filters' in filter)
    return filter.type === 'and' ? filter.filters.every((f) => matchesFilter(f, attributes)) : filter.filters.some((f) => matchesFilter(f, attributes));
  const actual = attributes?.[filter.key];
  switch (filter.type) {
    case 'eq':
      return actual === filter.value;
    case 'ne':
      return actual !== filter.value;
    case 'in':
      return actual !== undefined && typeof actual !== 'boolean' && filter.value.includes(actual);
    case 'nin':
      return actual === undefined || typeof actual === 'boolean' || !filter.value.includes(actual);
    default: {
      if (actual === undefined || typeof actual === 'boolean' || typeof actual !== typeof filter.value) return false;
      const a = actual as number | string;
      const b = filter.value as number | string;
      if (filter.type === 'gt') return a > b;
      if (filter.type === 'gte') return a >= b;
      if (filter.type === 'lt') return a < b;
      return a <= b;
    }
  }
}
