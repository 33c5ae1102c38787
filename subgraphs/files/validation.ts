import { createInterface } from 'node:readline';
import { badInput } from '../../lib/errors.js';

/** The purposes of OpenAI's files API that Mariner accepts. */
export const PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data'] as const;

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

/**
 * Checks a fine-tuning file line by line as it streams (OpenAI fine-tuning data formats): every
 * non-empty line a JSON object in the chat or prompt/completion format. Throws BAD_USER_INPUT
 * naming the first bad line.
 */
export async function validateFineTuneJsonl(stream: NodeJS.ReadableStream): Promise<{ examples: number }> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let number = 0;
  let examples = 0;
  try {
    for await (const line of lines) {
      number++;
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
    lines.close();
    (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
  if (examples === 0) throw badInput('file: a fine-tune file needs at least one example (JSONL, one per line)', 'file');
  return { examples };
}
