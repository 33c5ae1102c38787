import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { parse as parseYaml } from 'yaml';

/**
 * Validates REST response bodies against the official OpenAI API description
 * (openai/openai-openapi, vendored in ../shared/reference), so the /v1 layer is
 * checked against OpenAI's own schemas rather than against our reading of them.
 *
 * The description is OpenAPI 3.1, whose schemas are JSON Schema 2020-12: Ajv's
 * 2020 build validates them once a few OpenAPI-isms are rewritten (see
 * `toJsonSchema`). Component schemas are converted and compiled lazily, only
 * the ones a test reaches, because the description holds ~1,400 of them.
 */

export interface OpenApiValidator {
  /** Absolute path of the description in use. */
  readonly specPath: string;
  /** Its `openapi:` version, e.g. `3.1.0`. */
  readonly openapiVersion: string;
  /**
   * Validates a JSON body against the response schema the spec gives for
   * (method, path, status). `path` may be concrete (`/v1/files/file-abc`, with
   * or without the `/v1` server prefix, optionally a full URL) or templated
   * (`/v1/files/{id}`). Returns readable errors, empty when the body is valid.
   * Throws when the spec has no such operation or response, so a test cannot
   * silently validate nothing. Statuses the spec does not list fall back to its
   * `default` response, and error statuses (4xx/5xx) without a JSON schema to
   * the `ErrorResponse` component.
   */
  validateResponse(method: string, path: string, status: number, body: unknown): string[];
  /** Validates against a named component schema, e.g. `OpenAIFile`, `ErrorResponse`. Throws for an unknown name. */
  validateSchema(name: string, body: unknown): string[];
}

/** Throws an Error listing `errors` (use inside tests: `expectValid(v.validateSchema('Model', body))`). */
export function expectValid(errors: string[]): void {
  if (errors.length === 0) return;
  throw new Error(
    `Body does not match the OpenAI API schema (${errors.length} error${errors.length === 1 ? '' : 's'}):\n` + errors.map((e) => `  - ${e}`).join('\n'),
  );
}

/**
 * Loads (once per process per file) the OpenAI API description: `specPath`,
 * else $MARINER_OPENAPI_SPEC, else the copy in shared/ beside the repository.
 */
export function loadOpenApiValidator(specPath?: string): OpenApiValidator {
  const path = resolveSpecPath(specPath);
  let validator = validators.get(path);
  if (!validator) {
    validator = createValidator(path);
    validators.set(path, validator);
  }
  return validator;
}

// ---------------------------------------------------------------------------

/** The repository sits beside shared/ (at /work/main locally; CI clones it elsewhere with a copy of shared/ beside it). */
const DEFAULT_SPEC_URL = new URL('../../../shared/reference/openai-openapi/openapi.yaml', import.meta.url);

const validators = new Map<string, OpenApiValidator>();

function resolveSpecPath(specPath: string | undefined): string {
  const fromEnv = process.env.MARINER_OPENAPI_SPEC;
  const path = specPath !== undefined ? resolve(specPath) : fromEnv ? resolve(fromEnv) : fileURLToPath(DEFAULT_SPEC_URL);
  if (!existsSync(path)) {
    throw new Error(
      `OpenAI API description not found at ${path}. ` +
        'Expected shared/reference/openai-openapi/openapi.yaml beside the repository, or set MARINER_OPENAPI_SPEC.',
    );
  }
  return path;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface ResponseObject {
  $ref?: string;
  content?: Record<string, { schema?: JsonObject }>;
}

interface Operation {
  method: string;
  /** The spec's path key, e.g. `/files/{file_id}`. */
  template: string;
  /** One matcher per path segment. */
  segments: RegExp[];
  /** Query parameters the path key itself carries (the spec has `/responses/{id}?beta=true`). */
  query: URLSearchParams;
  responses: Record<string, ResponseObject>;
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const SCHEMA_REF_PREFIX = '#/components/schemas/';
/** Not a real address: Ajv only needs a unique absolute URI per component schema. */
const SCHEMA_ID_BASE = 'https://openai-openapi.mariner.invalid/schemas/';

function createValidator(specPath: string): OpenApiValidator {
  const doc = parseYaml(readFileSync(specPath, 'utf8'), { maxAliasCount: -1 }) as JsonObject;
  const openapiVersion = String(doc.openapi ?? '');
  if (!/^3\.[01]\./.test(openapiVersion)) {
    throw new Error(`${specPath}: expected an OpenAPI 3.0 or 3.1 description, found openapi: ${openapiVersion || '(none)'}`);
  }
  const components = asObject(doc.components);
  const componentSchemas = asObject(components.schemas);
  const componentResponses = asObject(components.responses);
  const serverPrefix = serverPathPrefix(doc);
  const operations = collectOperations(asObject(doc.paths));

  const ajv = new Ajv2020({
    // OpenAPI keywords Ajv does not know (example, discriminator leftovers,
    // x-* extensions, the spec's own stray ones like `group`) are annotations.
    strict: false,
    allErrors: true,
    // Puts the offending value on each error, for "(got ...)" in messages.
    verbose: true,
    validateSchema: false,
  });
  addFormats(ajv);

  const added = new Set<string>();
  const compiled = new Map<string, ValidateFunction>();

  /** Converts and registers component schemas and everything they reference (Ajv resolves refs at compile time). */
  function addComponents(names: Iterable<string>): void {
    const pending = [...names];
    for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
      if (added.has(name)) continue;
      const schema = componentSchemas[name];
      if (schema === undefined) throw new Error(`The OpenAI API description has no component schema '${name}'`);
      const refs = new Set<string>();
      ajv.addSchema(toJsonSchema(schema, { rootId: schemaId(name), refs, ajv }, true) as object, schemaId(name));
      added.add(name);
      pending.push(...refs);
    }
  }

  function compileComponent(name: string): ValidateFunction {
    const key = `schema:${name}`;
    let validate = compiled.get(key);
    if (!validate) {
      addComponents([name]);
      validate = ajv.getSchema(schemaId(name));
      if (!validate) throw new Error(`Ajv could not compile component schema '${name}'`);
      compiled.set(key, validate);
    }
    return validate;
  }

  function compileInline(key: string, schema: Json): ValidateFunction {
    let validate = compiled.get(key);
    if (!validate) {
      const refs = new Set<string>();
      const converted = toJsonSchema(schema, { rootId: undefined, refs, ajv }, true);
      addComponents(refs);
      validate = ajv.compile(converted as object);
      compiled.set(key, validate);
    }
    return validate;
  }

  function run(label: string, validate: ValidateFunction, body: unknown): string[] {
    if (validate(body)) return [];
    return [...new Set((validate.errors ?? []).map((e) => `${label}: ${describeError(e)}`))];
  }

  function resolveResponse(response: ResponseObject): ResponseObject {
    if (typeof response.$ref !== 'string') return response;
    const prefix = '#/components/responses/';
    const name = response.$ref.startsWith(prefix) ? decodePointerToken(response.$ref.slice(prefix.length)) : undefined;
    const target = name === undefined ? undefined : componentResponses[name];
    if (target === undefined) throw new Error(`Unresolvable response $ref ${response.$ref}`);
    return resolveResponse(target as ResponseObject);
  }

  return {
    specPath,
    openapiVersion,

    validateSchema(name, body) {
      return run(name, compileComponent(name), body);
    },

    validateResponse(method, path, status, body) {
      const operation = findOperation(operations, method, path, serverPrefix);
      const where = `${operation.method.toUpperCase()} ${operation.template}`;
      const listed = Object.keys(operation.responses);
      const key = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => k in operation.responses);
      const isError = status >= 400 && status <= 599;
      if (key === undefined && !isError) {
        throw new Error(`The OpenAI API description lists no ${status} response for ${where} (it lists ${listed.join(', ')})`);
      }
      const response = key === undefined ? undefined : resolveResponse(operation.responses[key]!);
      const media = response?.content ? jsonMediaType(response.content) : undefined;
      const schema = media === undefined ? undefined : response?.content?.[media]?.schema;
      if (schema === undefined) {
        // OpenAI documents its error body once (ErrorResponse) rather than per operation.
        if (isError) return run('ErrorResponse', compileComponent('ErrorResponse'), body);
        const types = Object.keys(response?.content ?? {});
        throw new Error(`The OpenAI API description gives no JSON schema for ${where} ${key} ` + `(content: ${types.length ? types.join(', ') : 'none'})`);
      }
      const refName = componentRefName(schema);
      if (refName !== undefined && componentSchemas[refName] !== undefined) {
        return run(refName, compileComponent(refName), body);
      }
      return run(`${where} ${key}`, compileInline(`response:${where} ${key}`, schema), body);
    },
  };
}

// --- Converting OpenAPI schemas to JSON Schema 2020-12 ---------------------

interface ConvertContext {
  /** `$id` of the component being converted; `$recursiveRef: "#"` points at it. */
  rootId: string | undefined;
  /** Component schema names referenced, to register before compiling. */
  refs: Set<string>;
  ajv: Ajv2020;
}

const SCHEMA_MAP_KEYWORDS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas']);
const SCHEMA_LIST_KEYWORDS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
const SCHEMA_KEYWORDS = new Set([
  'items',
  'additionalItems',
  'additionalProperties',
  'unevaluatedItems',
  'unevaluatedProperties',
  'propertyNames',
  'contains',
  'not',
  'if',
  'then',
  'else',
]);
/** OpenAPI-only annotations; dropped so Ajv never sees them (`discriminator` only speeds up oneOf, it adds no constraint). */
const DROPPED_KEYWORDS = new Set(['discriminator', 'example', 'xml', 'externalDocs', '$recursiveAnchor']);

/**
 * Rewrites one OpenAPI schema into JSON Schema 2020-12 that Ajv validates:
 * - `$ref: #/components/schemas/X` → the absolute `$id` X is registered under;
 * - `nullable: true` (OpenAPI 3.0, still used ~110 times in this 3.1 file) → null allowed;
 * - `$recursiveRef: "#"` (2019-09, unknown to Ajv 2020) → a `$ref` to the enclosing component;
 * - OpenAPI 3.0 boolean `exclusiveMinimum/Maximum` → the 2020-12 numeric form;
 * - `discriminator`, `example`, `x-*` dropped; unknown formats registered as annotations;
 * - at the root of a component or response, `properties`/`required` without a `type` imply
 *   `type: object` (OpenAIFile and Model omit it, which would let a string or an array pass).
 */
function toJsonSchema(schema: Json, context: ConvertContext, isRoot = false): Json {
  if (typeof schema === 'boolean') return schema;
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new Error(`Not a schema: ${JSON.stringify(schema)?.slice(0, 80)}`);
  }
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith('x-') || DROPPED_KEYWORDS.has(key) || key === 'nullable') continue;
    if (key === '$ref' && typeof value === 'string') {
      out.$ref = rewriteRef(value, context);
    } else if (key === '$recursiveRef') {
      if (value !== '#' || context.rootId === undefined) throw new Error(`Unsupported $recursiveRef ${String(value)}`);
      out.$ref = context.rootId;
    } else if (SCHEMA_MAP_KEYWORDS.has(key) && isObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonSchema(v, context)]));
    } else if (SCHEMA_LIST_KEYWORDS.has(key) && Array.isArray(value)) {
      out[key] = value.map((v) => toJsonSchema(v, context));
    } else if (key === 'items' && Array.isArray(value)) {
      // OpenAPI 3.0 / draft-07 tuple form.
      out.prefixItems = value.map((v) => toJsonSchema(v, context));
    } else if (SCHEMA_KEYWORDS.has(key) && (isObject(value) || typeof value === 'boolean')) {
      out[key] = toJsonSchema(value, context);
    } else if ((key === 'exclusiveMinimum' || key === 'exclusiveMaximum') && typeof value === 'boolean') {
      const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
      if (value && typeof schema[bound] === 'number') out[key] = schema[bound];
    } else if (key === 'format' && typeof value === 'string') {
      if (!context.ajv.formats[value]) context.ajv.addFormat(value, true);
      out.format = value;
    } else {
      // Data (enum, const, default, required, ...) and unknown keywords, kept as they are.
      out[key] = value;
    }
  }
  // A 3.0 boolean exclusive bound replaces the inclusive one it qualified.
  for (const [exclusive, bound] of [
    ['exclusiveMinimum', 'minimum'],
    ['exclusiveMaximum', 'maximum'],
  ] as const) {
    if (schema[exclusive] === true) delete out[bound];
  }
  if (
    isRoot &&
    out.type === undefined &&
    (out.properties !== undefined || out.required !== undefined) &&
    !['$ref', 'allOf', 'anyOf', 'oneOf', 'not', 'if', 'enum', 'const'].some((k) => k in out)
  ) {
    out.type = 'object';
  }
  return schema.nullable === true ? allowNull(out) : out;
}

function allowNull(schema: JsonObject): JsonObject {
  const simple = !['$ref', 'allOf', 'anyOf', 'oneOf', 'not', 'if', 'const'].some((k) => k in schema);
  if (simple && typeof schema.type === 'string') {
    const widened: JsonObject = { ...schema, type: [schema.type, 'null'] };
    if (Array.isArray(schema.enum) && !schema.enum.includes(null)) widened.enum = [...schema.enum, null];
    return widened;
  }
  if (simple && schema.type === undefined && schema.enum === undefined) return schema; // already accepts null
  return { anyOf: [schema, { type: 'null' }] };
}

function rewriteRef(ref: string, context: ConvertContext): string {
  if (!ref.startsWith(SCHEMA_REF_PREFIX)) {
    throw new Error(`Unsupported $ref ${ref} (only ${SCHEMA_REF_PREFIX}* is handled)`);
  }
  const [nameToken, ...rest] = ref.slice(SCHEMA_REF_PREFIX.length).split('/');
  const name = decodePointerToken(nameToken!);
  context.refs.add(name);
  return rest.length ? `${schemaId(name)}#/${rest.join('/')}` : schemaId(name);
}

function componentRefName(schema: Json): string | undefined {
  if (!isObject(schema) || typeof schema.$ref !== 'string' || Object.keys(schema).length !== 1) return undefined;
  const token = schema.$ref.startsWith(SCHEMA_REF_PREFIX) ? schema.$ref.slice(SCHEMA_REF_PREFIX.length) : undefined;
  return token === undefined || token.includes('/') ? undefined : decodePointerToken(token);
}

function schemaId(name: string): string {
  return SCHEMA_ID_BASE + encodeURIComponent(name);
}

function decodePointerToken(token: string): string {
  return decodeURIComponent(token).replace(/~1/g, '/').replace(/~0/g, '~');
}

/**
 * OpenAPI formats: ajv-formats covers uri, date, int64, double, float, binary;
 * `unixtime` is OpenAI's own. Every unixtime field is documented "in seconds",
 * so a millisecond value (Date.now()) is rejected rather than waved through.
 */
function addFormats(ajv: Ajv2020): void {
  const plugin = ((ajvFormats as unknown as { default?: unknown }).default ?? ajvFormats) as (a: Ajv2020) => Ajv2020;
  plugin(ajv);
  ajv.addFormat('unixtime', { type: 'number', validate: (n: number) => n >= 0 && n < 1e11 });
}

// --- Matching a request to an operation -------------------------------------

function collectOperations(paths: JsonObject): Operation[] {
  const operations: Operation[] = [];
  for (const [key, item] of Object.entries(paths)) {
    if (!isObject(item)) continue;
    const [template = key, query = ''] = key.split('?', 2);
    const segments = splitPath(template).map(
      (segment) =>
        new RegExp(
          `^${segment
            .split(/(\{[^}]+\})/)
            .map((part) => (part.startsWith('{') ? '[^/]+' : escapeRegExp(part)))
            .join('')}$`,
        ),
    );
    for (const method of HTTP_METHODS) {
      const operation = item[method];
      if (!isObject(operation) || !isObject(operation.responses)) continue;
      operations.push({
        method,
        template: key,
        segments,
        query: new URLSearchParams(query),
        responses: operation.responses as unknown as Record<string, ResponseObject>,
      });
    }
  }
  return operations;
}

function findOperation(operations: Operation[], method: string, rawPath: string, serverPrefix: string): Operation {
  const url = new URL(rawPath, 'http://path.invalid');
  let pathname = url.pathname;
  if (serverPrefix && (pathname === serverPrefix || pathname.startsWith(`${serverPrefix}/`))) {
    pathname = pathname.slice(serverPrefix.length) || '/';
  }
  // new URL() percent-encodes braces; a templated segment like {id} should match a parameter.
  const segments = splitPath(pathname).map((s) => s.replace(/%7B/gi, '{').replace(/%7D/gi, '}'));
  const matching = operations.filter(
    (op) =>
      op.segments.length === segments.length &&
      op.segments.every((re, i) => re.test(segments[i]!)) &&
      [...op.query].every(([k, v]) => url.searchParams.getAll(k).includes(v)),
  );
  if (matching.length === 0) {
    throw new Error(`No path in the OpenAI API description matches ${rawPath} (looked for ${pathname || '/'})`);
  }
  const wanted = method.toLowerCase();
  const candidates = matching.filter((op) => op.method === wanted).sort(bySpecificity);
  if (candidates.length === 0) {
    const offered = [...new Set(matching.map((op) => `${op.method.toUpperCase()} ${op.template}`))];
    throw new Error(`The OpenAI API description has no ${method.toUpperCase()} for ${rawPath} (it has ${offered.join(', ')})`);
  }
  return candidates[0]!;
}

/** Query-qualified paths first, then literal segments before parameters (`/files/batch` before `/files/{id}`). */
function bySpecificity(a: Operation, b: Operation): number {
  const byQuery = b.query.size - a.query.size;
  if (byQuery !== 0) return byQuery;
  const literal = (op: Operation, i: number) => !op.template.split('?')[0]!.split('/').filter(Boolean)[i]!.includes('{');
  for (let i = 0; i < a.segments.length; i++) {
    const diff = Number(literal(b, i)) - Number(literal(a, i));
    if (diff !== 0) return diff;
  }
  return 0;
}

function serverPathPrefix(doc: JsonObject): string {
  const servers = Array.isArray(doc.servers) ? doc.servers : [];
  const first = servers[0];
  if (!isObject(first) || typeof first.url !== 'string') return '';
  return new URL(first.url, 'http://server.invalid').pathname.replace(/\/+$/, '');
}

function jsonMediaType(content: Record<string, unknown>): string | undefined {
  const types = Object.keys(content);
  return types.find((t) => t === 'application/json') ?? types.find((t) => /^[^;]*[/+]json\b/.test(t));
}

// --- Messages ----------------------------------------------------------------

/** e.g. `/bytes must be integer (got "120")`, `(root) must have required property 'id'`. */
function describeError(error: ErrorObject): string {
  const where = error.instancePath === '' ? '(root)' : error.instancePath;
  let message = error.message ?? `fails ${error.keyword}`;
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'additionalProperties') message += ` ('${String(params.additionalProperty)}')`;
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    message += ` ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  if (error.keyword === 'const') message += ` ${JSON.stringify(params.allowedValue)}`;
  const data: unknown = error.data;
  if (data === null || typeof data !== 'object') message += ` (got ${preview(data)})`;
  return `${where} ${message}`;
}

function preview(value: unknown): string {
  const text = value === undefined ? 'undefined' : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// --- Small helpers -------------------------------------------------------------

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function asObject(value: Json | undefined): JsonObject {
  return isObject(value) ? value : {};
}
