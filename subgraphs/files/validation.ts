import { badInput } from '../../lib/errors.js';

/**
 * The purposes of OpenAI's files API that Mariner accepts. `batch_output` is what the batches component
 * writes a batch's output and error files as (OpenAI's files carry it too); it is accepted from anyone.
 */
export const PURPOSES = ['assistants', 'batch', 'batch_output', 'fine-tune', 'vision', 'user_data'] as const;

export function validPurpose(value: string, field = 'purpose'): string {
  if (!(PURPOSES as readonly string[]).includes(value)) {
    throw badInput(`${field}: "${value.slice(0, 40)}" is not a supported purpose (one of ${PURPOSES.join(', ')})`, field);
  }
  return value;
}

const CONTROL = /[\u0000-\u001f\u007f/\\]/;

/** A file name as shown to users: no path, no control characters, 1–255 characters. */
export function validFilename(value: string, field = 'filename'): string {
  const name = value.trim();
  if (!name || name === '.' || name === '..') throw badInput(`${field} must not be empty`, field);
  if (name.length > 255) throw badInput(`${field} must be at most 255 characters`, field);
  if (CONTROL.test(name)) throw badInput(`${field} must not contain slashes or control characters`, field);
  return name;
}

const ROLES = new Set(['system', 'user', 'assistant', 'tool', 'developer', 'function']);

/** Why a fine-tuning example is not in the chat or prompt/completion format, or null if it is. */
function exampleProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not a JSON object';
  const example = value as Record<string, unknown>;
  if ('messages' in example) {
    const messages = example['messages'];
    if (!Array.isArray(messages) || messages.length === 0) return '"messages" must be a non-empty array';
    for (const [i, message] of messages.entries()) {
      if (typeof message !== 'object' || message === null) return `messages[${i}] is not an object`;
      const { role, content } = message as Record<string, unknown>;
      if (typeof role !== 'string' || !ROLES.has(role)) return `messages[${i}].role must be one of ${[...ROLES].join(', ')}`;
      if (content !== null && typeof content !== 'string' && !Array.isArray(content) && !('tool_calls' in message)) {
        return `messages[${i}].content must be a string`;
      }
    }
    return null;
  }
  if ('prompt' in example || 'completion' in example) {
    if (typeof example['prompt'] !== 'string') return '"prompt" must be a string';
    if (typeof example['completion'] !== 'string') return '"completion" must be a string';
    return null;
  }
  return 'has neither "messages" (chat format) nor "prompt"/"completion"';
}

const NEWLINE = 0x0a;

/**
 * The lines of a stream, as Buffers without their `\n` (and a `\r` before it), holding at most one
 * line of `maxLineBytes` in memory: a longer line throws BAD_USER_INPUT naming its number before the
 * rest of it is read (readline would buffer a line of any length).
 */
async function* boundedLines(stream: AsyncIterable<Buffer | string>, maxLineBytes: number): AsyncGenerator<{ number: number; bytes: Buffer }> {
  let parts: Buffer[] = [];
  let length = 0;
  let number = 1;
  const append = (piece: Buffer) => {
    length += piece.length;
    if (length > maxLineBytes) {
      throw badInput(`file: line ${number} is longer than ${maxLineBytes} bytes, the most one fine-tuning example may have`, 'file');
    }
    if (piece.length > 0) parts.push(piece);
  };
  const take = (): Buffer => {
    let line = parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    parts = [];
    length = 0;
    return line;
  };
  for await (const chunk of stream) {
    let buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    for (let end = buffer.indexOf(NEWLINE); end !== -1; end = buffer.indexOf(NEWLINE)) {
      append(buffer.subarray(0, end));
      yield { number, bytes: take() };
      number++;
      buffer = buffer.subarray(end + 1);
    }
    append(buffer);
  }
  if (length > 0) yield { number, bytes: take() };
}

/**
 * Checks a fine-tuning file line by line as it streams (OpenAI fine-tuning data formats): every
 * non-empty line a JSON object in the chat or prompt/completion format, and at most `maxLineBytes`
 * long (MARINER_MAX_FINE_TUNE_LINE_BYTES), so one huge line cannot hold the server's memory. Throws BAD_USER_INPUT naming the first bad line.
 */
export async function validateFineTuneJsonl(stream: NodeJS.ReadableStream, maxLineBytes: number): Promise<{ examples: number }> {
  let examples = 0;
  try {
    for await (const { number, bytes } of boundedLines(stream as AsyncIterable<Buffer | string>, maxLineBytes)) {
      const line = bytes.toString('utf8');
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw badInput(`file: line ${number} is not valid JSON`, 'file');
      }
      const problem = exampleProblem(parsed);
      if (problem) throw badInput(`file: line ${number} ${problem}`, 'file');
      examples++;
    }
  } finally {
    (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
  if (examples === 0) throw badInput('file: a fine-tune file needs at least one example (JSONL, one per line)', 'file');
  return { examples };
}
