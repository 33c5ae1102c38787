import { isJsonObject } from '../lib/jsonObject.js';
import { RestError } from './errors.js';

/**
 * The fields a request body may carry: each name maps to null (its value is the route's to check) or to
 * the shape of the object it holds. Maps with free keys (`envs`, `scripts`) are null.
 */
export interface BodyShape {
  readonly [field: string]: BodyShape | null;
}

/** `devicePluginConfig` → `device_plugin_config`. */
const protoName = (jsonName: string) => jsonName.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);

/**
 * A Mariner- or LLMariner-specific route's body, checked against its shape (issue 24: a wrong shape such
 * as `{"device_config": …}` was accepted with 200 and silently ignored). A field the shape does not name
 * is refused with 400 in OpenAI's error shape, naming every such field (with its path) and what the
 * route accepts there. As grpc-gateway does (protojson), a field may also be given by its JSON name
 * (lowerCamelCase, `devicePluginConfig`): the copy returned has the proto names the routes read.
 * OpenAI's own routes are not checked this way: OpenAI's SDKs send fields a given server may not know.
 * `at`: where the object sits in the body (`assignments[0]`), for a list's items.
 */
export function strictBody(body: Record<string, unknown>, shape: BodyShape, at = ''): Record<string, unknown> {
  const unknown: string[] = [];
  const accepted = new Map<string, string[]>();
  const normalised = walk(body, shape, at, unknown, accepted);
  if (unknown.length > 0) {
    const where = [...accepted].map(([at, names]) => `${at === '' ? 'the body' : at} takes ${names.join(', ')}`).join('; ');
    throw new RestError(
      400,
      `Unrecognized request argument${unknown.length > 1 ? 's' : ''} supplied: ${unknown.join(', ')} (${where})`,
      'invalid_request_error',
      unknown[0]!,
      'unknown_parameter',
    );
  }
  return normalised;
}

function walk(value: Record<string, unknown>, shape: BodyShape, at: string, unknown: string[], accepted: Map<string, string[]>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [given, field] of Object.entries(value)) {
    const name = Object.hasOwn(shape, given) ? given : protoName(given);
    const path = at === '' ? given : `${at}.${given}`;
    if (!Object.hasOwn(shape, name)) {
      unknown.push(path);
      accepted.set(at, Object.keys(shape));
      continue;
    }
    const inner = shape[name];
    out[name] = inner && isJsonObject(field) ? walk(field, inner, at === '' ? name : `${at}.${name}`, unknown, accepted) : field;
  }
  return out;
}
