import { badInput } from './errors.js';
import { newId } from './ids.js';
import { isJsonObject, type JsonObject } from './jsonObject.js';

/**
 * A Responses API request (OpenAI `POST /v1/responses`) read and checked, and the chat completion it
 * becomes: Mariner's runtimes speak chat completions, so a response is generated as one through the
 * inference data plane (rest-compat/responses.ts; a batch's `/v1/responses` lines in
 * subgraphs/batches/requestRunner.ts). Input items get ids here (`msg_`, `fc_`), as OpenAI gives them.
 * Bad input is BAD_USER_INPUT naming the parameter.
 */

/** An item of a response's input or output, in OpenAI's shape, with its id. */
export type ResponseItem = JsonObject & { id: string; type: string };

export interface FileSearchTool {
  vectorStoreIds: string[];
  maxNumResults: number;
  scoreThreshold: number | null;
  filters: unknown;
}

export interface ResponseRequest {
  model: string;
  /** This request's input, as stored and listed by input_items. */
  inputItems: ResponseItem[];
  instructions: string | null;
  previousResponseId: string | null;
  stream: boolean;
  store: boolean;
  /** The tools as the response object echoes them. */
  tools: JsonObject[];
  /** Function tools, as chat tools. */
  chatTools: JsonObject[];
  fileSearch: FileSearchTool | null;
  toolChoice: string | JsonObject;
  parallelToolCalls: boolean;
  temperature: number | null;
  topP: number | null;
  maxOutputTokens: number | null;
  metadata: Record<string, string>;
  /** `text.format` as the response echoes it, and as chat's response_format (null: plain text). */
  text: JsonObject;
  responseFormat: JsonObject | null;
  /** `include: ["file_search_call.results"]`: the search results go into the file_search_call item. */
  includeSearchResults: boolean;
  user: string | null;
}

/** OpenAI file_search default (it allows up to 50). */
const DEFAULT_SEARCH_RESULTS = 10;

/** Parameters Mariner does not serve: refused by name rather than ignored. */
const UNSUPPORTED = ['background', 'conversation', 'prompt'] as const;

const bad = (message: string, param: string) => badInput(message, param);

function optionalNumber(body: JsonObject, name: string, min: number, max: number): number | null {
  const value = body[name];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) throw bad(`${name} must be a number from ${min} to ${max}`, name);
  return value;
}

function optionalBoolean(body: JsonObject, name: string, fallback: boolean): boolean {
  const value = body[name];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw bad(`${name} must be a boolean`, name);
  return value;
}

/** Content parts of an input message: strings become one `input_text` (or `output_text` for the assistant). */
function contentOf(content: unknown, role: string, param: string): JsonObject[] {
  const textType = role === 'assistant' ? 'output_text' : 'input_text';
  const text = (value: string) => (role === 'assistant' ? { type: textType, text: value, annotations: [] } : { type: textType, text: value });
  if (typeof content === 'string') return [text(content)];
  if (!Array.isArray(content)) throw bad(`${param} must be a string or an array of content parts`, param);
  return content.map((part: unknown, i) => {
    if (!isJsonObject(part)) throw bad(`${param}[${i}] must be an object`, `${param}[${i}]`);
    const type = part['type'];
    if ((type === 'input_text' || type === 'output_text') && typeof part['text'] === 'string') return text(part['text']);
    if (type === 'input_image' && typeof part['image_url'] === 'string' && role !== 'assistant') {
      return { type, image_url: part['image_url'], detail: typeof part['detail'] === 'string' ? part['detail'] : 'auto' };
    }
    throw bad(`${param}[${i}]: content parts of type input_text, output_text or input_image (with image_url) are served`, `${param}[${i}].type`);
  });
}

/** One input item, normalised to OpenAI's item shape with an id. */
function inputItem(value: unknown, i: number): ResponseItem {
  const param = `input[${i}]`;
  if (!isJsonObject(value)) throw bad(`${param} must be an object`, param);
  const type = value['type'] ?? 'message';
  const id = typeof value['id'] === 'string' && value['id'] !== '' ? value['id'] : null;
  if (type === 'message') {
    const role = value['role'];
    if (role !== 'user' && role !== 'system' && role !== 'developer' && role !== 'assistant')
      throw bad(`${param}.role must be user, system, developer or assistant`, `${param}.role`);
    const content = contentOf(value['content'], role, `${param}.content`);
    return { id: id ?? newId('responseMessage'), type, role, content, status: 'completed' };
  }
  if (type === 'function_call') {
    const { call_id: callId, name, arguments: args } = value;
    if (typeof callId !== 'string' || typeof name !== 'string' || typeof args !== 'string')
      throw bad(`${param}: a function_call needs call_id, name and arguments (strings)`, param);
    return { id: id ?? newId('functionCall'), type, call_id: callId, name, arguments: args, status: 'completed' };
  }
  if (type === 'function_call_output') {
    const { call_id: callId, output } = value;
    if (typeof callId !== 'string' || typeof output !== 'string') throw bad(`${param}: a function_call_output needs call_id and output (strings)`, param);
    return { id: id ?? newId('functionCall'), type, call_id: callId, output, status: 'completed' };
  }
  if (type === 'file_search_call' && id) return { ...value, id, type };
  throw bad(`${param}.type: message, function_call and function_call_output items are served, not ${JSON.stringify(type)}`, `${param}.type`);
}

/** The tools: function tools (as chat tools) and at most one file_search tool. */
function toolsOf(body: JsonObject): Pick<ResponseRequest, 'tools' | 'chatTools' | 'fileSearch'> {
  const raw = body['tools'] ?? [];
  if (!Array.isArray(raw)) throw bad('tools must be an array', 'tools');
  const tools: JsonObject[] = [];
  const chatTools: JsonObject[] = [];
  let fileSearch: FileSearchTool | null = null;
  raw.forEach((tool: unknown, i) => {
    const param = `tools[${i}]`;
    if (!isJsonObject(tool)) throw bad(`${param} must be an object`, param);
    if (tool['type'] === 'function') {
      const { name, description, parameters, strict } = tool;
      if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw bad(`${param}.name: 1 to 64 letters, digits, _ or -`, `${param}.name`);
      if (parameters !== undefined && parameters !== null && !isJsonObject(parameters))
        throw bad(`${param}.parameters must be a JSON Schema object`, `${param}.parameters`);
      if (strict !== undefined && strict !== null && typeof strict !== 'boolean') throw bad(`${param}.strict must be a boolean`, `${param}.strict`);
      tools.push({
        type: 'function',
        name,
        description: typeof description === 'string' ? description : null,
        parameters: parameters ?? null,
        strict: strict ?? null,
      });
      chatTools.push({
        type: 'function',
        function: {
          name,
          ...(typeof description === 'string' ? { description } : {}),
          ...(parameters ? { parameters } : {}),
          ...(typeof strict === 'boolean' ? { strict } : {}),
        },
      });
      return;
    }
    if (tool['type'] === 'file_search') {
      if (fileSearch) throw bad('tools: at most one file_search tool', param);
      const ids = tool['vector_store_ids'];
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((id) => typeof id === 'string'))
        throw bad(`${param}.vector_store_ids: one or more vector store ids`, `${param}.vector_store_ids`);
      const max = tool['max_num_results'] ?? DEFAULT_SEARCH_RESULTS;
      if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 50) throw bad(`${param}.max_num_results: 1 to 50`, `${param}.max_num_results`);
      const ranking = isJsonObject(tool['ranking_options']) ? tool['ranking_options'] : {};
      const threshold = typeof ranking['score_threshold'] === 'number' ? ranking['score_threshold'] : null;
      fileSearch = { vectorStoreIds: ids as string[], maxNumResults: max, scoreThreshold: threshold, filters: tool['filters'] ?? null };
      tools.push({ type: 'file_search', vector_store_ids: ids, max_num_results: max, ...(tool['filters'] ? { filters: tool['filters'] } : {}) });
      return;
    }
    throw bad(`${param}.type: function and file_search tools are served, not ${JSON.stringify(tool['type'])}`, `${param}.type`);
  });
  return { tools, chatTools, fileSearch };
}

function toolChoiceOf(body: JsonObject): string | JsonObject {
  const choice = body['tool_choice'] ?? 'auto';
  if (choice === 'auto' || choice === 'none' || choice === 'required') return choice;
  if (isJsonObject(choice) && choice['type'] === 'function' && typeof choice['name'] === 'string') return { type: 'function', name: choice['name'] };
  if (isJsonObject(choice) && choice['type'] === 'file_search') return { type: 'file_search' };
  throw bad('tool_choice must be auto, none, required, {type: "function", name} or {type: "file_search"}', 'tool_choice');
}

/** `text.format`: text, json_object, or json_schema (as chat's response_format). */
function textOf(body: JsonObject): Pick<ResponseRequest, 'text' | 'responseFormat'> {
  const text = body['text'];
  if (text === undefined || text === null) return { text: { format: { type: 'text' } }, responseFormat: null };
  const format = isJsonObject(text) ? text['format'] : undefined;
  if (format === undefined || format === null) return { text: { format: { type: 'text' } }, responseFormat: null };
  if (!isJsonObject(format)) throw bad('text.format must be an object', 'text.format');
  if (format['type'] === 'text') return { text: { format: { type: 'text' } }, responseFormat: null };
  if (format['type'] === 'json_object') return { text: { format: { type: 'json_object' } }, responseFormat: { type: 'json_object' } };
  if (format['type'] === 'json_schema' && typeof format['name'] === 'string' && isJsonObject(format['schema'])) {
    const { name, schema, strict, description } = format;
    return {
      text: { format },
      responseFormat: {
        type: 'json_schema',
        json_schema: { name, schema, ...(typeof strict === 'boolean' ? { strict } : {}), ...(typeof description === 'string' ? { description } : {}) },
      },
    };
  }
  throw bad('text.format: {type: "text"}, {type: "json_object"} or {type: "json_schema", name, schema}', 'text.format');
}

/** Reads a create request; a 400 naming the parameter for anything Mariner cannot serve as asked. */
export function readResponseRequest(body: JsonObject): ResponseRequest {
  for (const name of UNSUPPORTED) {
    if (body[name] !== undefined && body[name] !== null && body[name] !== false) throw bad(`${name} is not supported by this server`, name);
  }
  const model = body['model'];
  if (typeof model !== 'string' || model === '') throw bad("Missing required parameter: 'model'", 'model');
  const input = body['input'];
  let inputItems: ResponseItem[];
  if (typeof input === 'string') inputItems = [inputItem({ type: 'message', role: 'user', content: input }, 0)];
  else if (Array.isArray(input) && input.length > 0) inputItems = input.map(inputItem);
  else throw bad("Missing required parameter: 'input' (a string or a non-empty array of items)", 'input');
  const ids = new Set<string>();
  inputItems.forEach((item, i) => {
    if (ids.has(item.id)) throw bad(`input[${i}].id repeats the id ${item.id}`, `input[${i}].id`);
    ids.add(item.id);
  });
  const instructions = body['instructions'] ?? null;
  if (instructions !== null && typeof instructions !== 'string') throw bad('instructions must be a string', 'instructions');
  const previous = body['previous_response_id'] ?? null;
  if (previous !== null && (typeof previous !== 'string' || previous === '')) throw bad('previous_response_id must be a response id', 'previous_response_id');
  const metadata = body['metadata'] ?? {};
  if (!isJsonObject(metadata) || Object.keys(metadata).length > 16 || !Object.values(metadata).every((v) => typeof v === 'string' && v.length <= 512))
    throw bad('metadata: up to 16 string pairs (values up to 512 characters)', 'metadata');
  const maxOutput = body['max_output_tokens'];
  if (maxOutput !== undefined && maxOutput !== null && (typeof maxOutput !== 'number' || !Number.isInteger(maxOutput) || maxOutput < 1))
    throw bad('max_output_tokens must be a positive integer', 'max_output_tokens');
  const include = body['include'] ?? [];
  if (!Array.isArray(include)) throw bad('include must be an array', 'include');
  const user = body['user'];
  return {
    model,
    inputItems,
    instructions,
    previousResponseId: previous,
    stream: optionalBoolean(body, 'stream', false),
    store: optionalBoolean(body, 'store', true),
    ...toolsOf(body),
    toolChoice: toolChoiceOf(body),
    parallelToolCalls: optionalBoolean(body, 'parallel_tool_calls', true),
    temperature: optionalNumber(body, 'temperature', 0, 2),
    topP: optionalNumber(body, 'top_p', 0, 1),
    maxOutputTokens: typeof maxOutput === 'number' ? maxOutput : null,
    metadata: metadata as Record<string, string>,
    ...textOf(body),
    includeSearchResults: include.includes('file_search_call.results'),
    user: typeof user === 'string' ? user : null,
  };
}

/** A message's text: its text parts joined. */
export function textOfItem(item: JsonObject): string {
  const content = item['content'];
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: JsonObject) => (typeof part['text'] === 'string' ? part['text'] : ''))
    .filter(Boolean)
    .join('\n');
}

/** Items as chat messages: messages by role (developer as system, which every runtime takes), function calls and their outputs as tool calls and tool messages. */
export function chatMessagesOf(items: readonly JsonObject[]): JsonObject[] {
  const messages: JsonObject[] = [];
  for (const item of items) {
    if (item['type'] === 'message') {
      const role = item['role'] === 'developer' ? 'system' : item['role'];
      const parts = Array.isArray(item['content']) ? (item['content'] as JsonObject[]) : [];
      const images = parts.filter((p) => p['type'] === 'input_image');
      if (images.length === 0) messages.push({ role, content: textOfItem(item) });
      else
        messages.push({
          role,
          content: parts.map((p) =>
            p['type'] === 'input_image'
              ? { type: 'image_url', image_url: { url: p['image_url'], detail: p['detail'] ?? 'auto' } }
              : { type: 'text', text: p['text'] },
          ),
        });
    } else if (item['type'] === 'function_call') {
      const call = { id: item['call_id'], type: 'function', function: { name: item['name'], arguments: item['arguments'] } };
      const last = messages.at(-1);
      // Parallel calls are one assistant message with several tool calls.
      if (last && last['role'] === 'assistant' && Array.isArray(last['tool_calls'])) (last['tool_calls'] as unknown[]).push(call);
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (item['type'] === 'function_call_output') {
      messages.push({ role: 'tool', tool_call_id: item['call_id'], content: item['output'] });
    }
    // file_search_call items carry no message: what they retrieved was context for that turn.
  }
  return messages;
}

/** The chat completion a response is generated as: its system text first, then the conversation; always streamed (with usage). */
export function chatRequestOf(request: ResponseRequest, system: string | null, conversation: readonly JsonObject[]): JsonObject {
  const chat: JsonObject = {
    model: request.model,
    messages: [...(system ? [{ role: 'system', content: system }] : []), ...chatMessagesOf([...conversation, ...request.inputItems])],
    stream: true,
    stream_options: { include_usage: true },
  };
  if (request.maxOutputTokens !== null) chat['max_tokens'] = request.maxOutputTokens;
  if (request.temperature !== null) chat['temperature'] = request.temperature;
  if (request.topP !== null) chat['top_p'] = request.topP;
  if (request.user !== null) chat['user'] = request.user;
  if (request.responseFormat) chat['response_format'] = request.responseFormat;
  const choice = request.toolChoice;
  if (request.chatTools.length > 0 && choice !== 'none') {
    chat['tools'] = request.chatTools;
    chat['parallel_tool_calls'] = request.parallelToolCalls;
    if (typeof choice === 'string') chat['tool_choice'] = choice;
    else if (choice['type'] === 'function') chat['tool_choice'] = { type: 'function', function: { name: choice['name'] } };
  }
  return chat;
}
