/**
 * How LLMariner's grpc-gateway JSON is read (user-manager and cluster-manager APIs): fields by their
 * snake_case proto names, absent and null alike; query booleans as Go's strconv.ParseBool reads them;
 * PATCH bodies with a FieldMask (AIP-134); REST errors that name the route's fields, not GraphQL's
 * arguments.
 */
import { RestError } from './errors.js';
import { isJsonObject, type JsonObject } from './json.js';

// --- Request fields ---------------------------------------------------------------------------

/** A string field; absent and null read as undefined. */
export function optionalString(body: JsonObject, key: string, param = key): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw RestError.badRequest(`${param} must be a string`, param);
  return value;
}

export function requiredString(body: JsonObject, key: string, param = key): string {
  const value = optionalString(body, key, param);
  if (value === undefined) throw RestError.badRequest(`${param} is required`, param);
  return value;
}

export function optionalBoolean(body: JsonObject, key: string, param = key): boolean | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw RestError.badRequest(`${param} must be a boolean`, param);
  return value;
}

/** `include_summary` (grpc-gateway parses query booleans as Go's strconv.ParseBool does). */
export function queryBoolean(url: URL, name: string): boolean {
  const value = url.searchParams.get(name);
  if (value === null || value === '') return false;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  throw RestError.badRequest(`${name} must be true or false`, name);
}

/** Rewrites the `param` of a REST error thrown by `run` (GraphQL argument names → this route's names). */
export async function renamingParam<T>(run: Promise<T>, rename: (param: string) => string): Promise<T> {
  try {
    return await run;
  } catch (error) {
    if (error instanceof RestError && error.param) {
      throw new RestError(error.status, error.message, error.type, rename(error.param), error.code);
    }
    throw error;
  }
}

export const renameId = (to: string) => (param: string) => (param === 'id' ? to : param);

// --- Field masks ------------------------------------------------------------------------------

const snakeCase = (path: string) => path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * The update mask of a PATCH: `update_mask` in the body (a comma-separated string, as protojson writes
 * a FieldMask, or `{paths: [...]}`) or in the query (`?update_mask=a,b`, grpc-gateway's form). An
 * absent or empty mask is null: the fields present are updated (AIP-134).
 */
export function updateMask(body: JsonObject, url: URL, allowed: readonly string[]): string[] | null {
  const raw = body['update_mask'];
  let paths: string[];
  if (raw === undefined || raw === null) {
    paths = [...url.searchParams.getAll('update_mask'), ...url.searchParams.getAll('update_mask.paths')].flatMap((p) => p.split(','));
  } else if (typeof raw === 'string') {
    paths = raw.split(',');
  } else if (isJsonObject(raw) && Array.isArray(raw['paths']) && raw['paths'].every((p) => typeof p === 'string')) {
    paths = raw['paths'] as string[];
  } else if (Array.isArray(raw) && raw.every((p) => typeof p === 'string')) {
    paths = raw as string[];
  } else {
    throw RestError.badRequest('update_mask must be a comma-separated list of field paths', 'update_mask');
  }
  const normalized = [...new Set(paths.map((p) => snakeCase(p.trim())).filter(Boolean))];
  for (const path of normalized) {
    if (!allowed.includes(path)) {
      throw RestError.badRequest(`update_mask: ${path} cannot be updated (updatable: ${allowed.join(', ')})`, 'update_mask');
    }
  }
  return normalized.length ? normalized : null;
}

/**
 * A PATCH body: `{<resource>: {...}, update_mask}`, or the resource itself with the mask in the query
 * (grpc-gateway's `body: "<resource>"`). Returns the resource, the fields to change and the prefix its
 * fields' params carry. Only masked fields change (absent ones reset to their default, as a FieldMask
 * means); without a mask, the fields present.
 */
export function patchRequest(body: JsonObject, url: URL, resourceKey: string, allowed: readonly string[]) {
  const wrapped = body[resourceKey];
  if (wrapped !== undefined && wrapped !== null && !isJsonObject(wrapped)) {
    throw RestError.badRequest(`${resourceKey} must be an object`, resourceKey);
  }
  const resource = isJsonObject(wrapped) ? wrapped : body;
  const prefix = isJsonObject(wrapped) ? `${resourceKey}.` : '';
  const mask = updateMask(body, url, allowed);
  const fields = mask ?? allowed.filter((f) => resource[f] !== undefined && resource[f] !== null);
  if (fields.length === 0) {
    throw RestError.badRequest(`Nothing to update: give update_mask or the fields to change (${allowed.join(', ')})`, 'update_mask');
  }
  return { resource, fields: new Set(fields), prefix };
}
