import { CliError } from './errors.js';

/**
 * The events of a server-sent event stream (the OpenAI API's `stream: true`), as the JSON each `data:`
 * line holds, until `[DONE]`. An error event (`{error: {...}}`) throws a CliError with its message.
 */
export async function* sseJson<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).replace(/^ /, ''))
          .join('\n');
        if (!data) continue;
        if (data === '[DONE]') return;
        const parsed = JSON.parse(data) as T & { error?: { message?: string; code?: string } };
        if (parsed.error)
          throw new CliError(`${parsed.error.message ?? 'the stream failed'}${parsed.error.code ? ` (${parsed.error.code})` : ''}`, parsed.error.code);
        yield parsed as T;
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}
