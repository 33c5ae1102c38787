import { badInput } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import type { ResponseItemModel, ResponseStatusValue } from './store.js';
import { isJsonObject } from '../../lib/jsonObject.js';

const STATUSES: readonly ResponseStatusValue[] = ['completed', 'failed', 'in_progress', 'cancelled', 'queued', 'incomplete'];

/** Input items one response may hold (OpenAI sets no number; the request body's size bounds them). */
export const MAX_INPUT_ITEMS = 2000;

/** An item: an object with its `id` and `type` (OpenAI's item shapes; the rest is kept as it is). */
function item(value: unknown, field: string): ResponseItemModel {
  if (!isJsonObject(value)) throw badInput(`${field}: an item must be an object`, field);
  const { id, type } = value;
  if (typeof id !== 'string' || id === '' || id.length > 128) throw badInput(`${field}.id: a string of 1 to 128 characters`, field);
  if (typeof type !== 'string' || type === '') throw badInput(`${field}.type: required`, field);
  return { id, item: value };
}

/** What recordResponse stores, checked: the response object's id, model, status, output and link; the input items. */
export function validRecord(input: { response: unknown; inputItems: readonly unknown[] }) {
  const body = input.response;
  if (!isJsonObject(body) || body['object'] !== 'response') throw badInput('response: an OpenAI response object (object "response")', 'input.response');
  const id = assertId('response', String(body['id'] ?? ''), 'input.response.id');
  const model = body['model'];
  if (typeof model !== 'string' || model === '') throw badInput('response.model: required', 'input.response.model');
  const status = body['status'];
  if (!STATUSES.includes(status as ResponseStatusValue)) throw badInput(`response.status: one of ${STATUSES.join(', ')}`, 'input.response.status');
  const output = body['output'];
  if (!Array.isArray(output)) throw badInput('response.output: an array of items', 'input.response.output');
  output.forEach((o, i) => item(o, `input.response.output.${i}`));
  const previous = body['previous_response_id'] ?? null;
  const previousResponseId = previous === null ? null : assertId('response', String(previous), 'input.response.previous_response_id');
  if (input.inputItems.length > MAX_INPUT_ITEMS) throw badInput(`inputItems: at most ${MAX_INPUT_ITEMS}`, 'input.inputItems');
  const inputItems = input.inputItems.map((value, i) => item(value, `input.inputItems.${i}`));
  const ids = new Set(inputItems.map((i) => i.id));
  if (ids.size !== inputItems.length) throw badInput('inputItems: each item needs an id of its own', 'input.inputItems');
  return { id, model, status: status as ResponseStatusValue, previousResponseId, body, inputItems };
}
