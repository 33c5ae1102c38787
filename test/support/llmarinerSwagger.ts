import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';

/**
 * Validates response bodies against LLMariner's published swagger (OpenAPI 2.0) documents, vendored in
 * test/fixtures/llmariner with their license, as LLMariner's servers write the JSON: grpc-gateway with
 * protojson `UseProtoNames` + `EmitDefaultValues` (e.g. cluster-monitor server/cmd/run.go). So the
 * swagger's camelCase property names (protoc-gen-openapiv2's JSON names) are checked as the snake_case
 * proto names; an int64 (`type: string, format: int64`) is a decimal string or, as every protojson
 * reader also accepts, an integer. With `strict` no field beyond the message's is allowed; with
 * `requireAll` every scalar, enum and repeated field must be present (EmitDefaultValues writes them even
 * when zero; protojson readers do not need them).
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface SwaggerValidator {
  /** Errors of `body` against the 200 response of (method, swagger path template); empty when valid. */
  validateResponse(method: string, template: string, body: unknown): string[];
  /** Errors of `body` against a named definition (`v1APIKey`). */
  validateDefinition(name: string, body: unknown): string[];
}

const snakeCase = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

interface Conversion {
  strict: boolean;
  requireAll: boolean;
  /** Definitions that are enums (a $ref to one is a scalar, not a message). */
  enums: Set<string>;
}

/** A swagger schema as JSON Schema for the JSON a grpc-gateway server writes. */
function toJsonSchema(schema: JsonObject, c: Conversion): JsonObject {
  if (typeof schema['$ref'] === 'string') return { $ref: schema['$ref'] };
  const out: JsonObject = {};
  if (schema['type'] === 'string' && (schema['format'] === 'int64' || schema['format'] === 'uint64')) {
    out['anyOf'] = [{ type: 'string', pattern: '^-?\\d+$' }, { type: 'integer' }];
  } else if (schema['type'] !== undefined) {
    out['type'] = schema['type'];
  }
  if (Array.isArray(schema['enum'])) out['enum'] = schema['enum'];
  if (schema['items']) out['items'] = toJsonSchema(schema['items'] as JsonObject, c);
  if (schema['additionalProperties'] && typeof schema['additionalProperties'] === 'object') {
    const additional = schema['additionalProperties'] as JsonObject;
    out['additionalProperties'] = Object.keys(additional).length ? toJsonSchema(additional, c) : true;
  }
  const properties = schema['properties'] as JsonObject | undefined;
  if (properties) {
    const converted: JsonObject = {};
    const required: string[] = [];
    for (const [name, property] of Object.entries(properties)) {
      const p = property as JsonObject;
      const key = name.startsWith('@') ? name : snakeCase(name);
      converted[key] = toJsonSchema(p, c);
      // A message field (a $ref to an object) may be absent; scalars, enums and lists never are.
      const isMessage = typeof p['$ref'] === 'string' && !c.enums.has((p['$ref'] as string).replace('#/definitions/', ''));
      if (!isMessage && !(p['type'] === 'object')) required.push(key);
    }
    out['type'] = 'object';
    out['properties'] = converted;
    if (c.requireAll) out['required'] = required;
    if (c.strict && !schema['additionalProperties']) out['additionalProperties'] = false;
  }
  return out;
}

export function loadSwaggerValidator(file: URL, options: { strict?: boolean; requireAll?: boolean } = {}): SwaggerValidator {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as JsonObject;
  if (doc['swagger'] !== '2.0') throw new Error(`${file.pathname}: expected a swagger 2.0 document`);
  const definitions = doc['definitions'] as Record<string, JsonObject>;
  const c: Conversion = {
    strict: options.strict ?? true,
    requireAll: options.requireAll ?? false,
    enums: new Set(
      Object.entries(definitions)
        .filter(([, d]) => Array.isArray(d['enum']))
        .map(([name]) => name),
    ),
  };
  const converted: JsonObject = {};
  for (const [name, definition] of Object.entries(definitions)) converted[name] = toJsonSchema(definition, c);
  const ajv = new Ajv({ allErrors: true, strict: false });
  const cache = new Map<string, ValidateFunction>();
  const compile = (schema: JsonObject, key: string) => {
    let validate = cache.get(key);
    if (!validate) {
      validate = ajv.compile({ ...schema, definitions: converted });
      cache.set(key, validate);
    }
    return validate;
  };
  const errorsOf = (validate: ValidateFunction, body: unknown) =>
    validate(body) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
  const paths = doc['paths'] as Record<string, Record<string, JsonObject>>;

  return {
    validateResponse(method, template, body) {
      const operation = paths[template]?.[method.toLowerCase()];
      if (!operation) throw new Error(`${file.pathname}: no ${method} ${template}`);
      const schema = ((operation['responses'] as JsonObject)['200'] as JsonObject | undefined)?.['schema'] as JsonObject | undefined;
      if (!schema) throw new Error(`${file.pathname}: ${method} ${template} has no 200 schema`);
      return errorsOf(compile(toJsonSchema(schema, c), `${method} ${template}`), body);
    },
    validateDefinition(name, body) {
      if (!definitions[name]) throw new Error(`${file.pathname}: no definition ${name}`);
      return errorsOf(compile({ $ref: `#/definitions/${name}` }, `#${name}`), body);
    },
  };
}

/** Throws an Error listing `errors` (inside tests). */
export function expectConforms(errors: string[], what: string): void {
  if (errors.length === 0) return;
  throw new Error(`${what} does not match LLMariner's swagger:\n` + errors.map((e) => `  - ${e}`).join('\n'));
}
