import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { UsageError } from '../errors.js';
import { printData } from '../output.js';
import { integerOption, readStdin, run } from '../command.js';
import { sseJson } from '../sse.js';

interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

interface Chunk {
  model: string;
  choices: { delta: { content?: string | null }; finish_reason: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

interface Settings {
  temperature?: number;
  maxTokens?: number;
}

interface Answer {
  content: string;
  finishReason: string | null;
  usage: Chunk['usage'] | null;
}

/** One answer, streamed through POST /v1/chat/completions; each piece of text goes to `write` as it arrives. */
async function streamAnswer(
  client: ApiClient,
  model: string,
  messages: Message[],
  settings: Settings,
  write: (text: string) => void,
  signal?: AbortSignal,
): Promise<Answer> {
  const response = await client.rest('POST', '/v1/chat/completions', {
    json: {
      model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      ...(settings.temperature !== undefined ? { temperature: settings.temperature } : {}),
      ...(settings.maxTokens !== undefined ? { max_tokens: settings.maxTokens } : {}),
    },
    ...(signal ? { signal } : {}),
  });
  const answer: Answer = { content: '', finishReason: null, usage: null };
  for await (const chunk of sseJson<Chunk>(response.body!)) {
    const choice = chunk.choices[0];
    const text = choice?.delta.content ?? '';
    if (text) {
      answer.content += text;
      write(text);
    }
    if (choice?.finish_reason) answer.finishReason = choice.finish_reason;
    if (chunk.usage) answer.usage = chunk.usage;
  }
  return answer;
}

/**
 * The interactive session: history kept for the session, a line ending in `\` continues the message,
 * Ctrl-C cancels the answer being written (or clears the line) and keeps the session, Ctrl-D exits.
 */
async function interactive(client: ApiClient, model: string, system: string | undefined, settings: Settings): Promise<void> {
  const history: Message[] = system ? [{ role: 'system', content: system }] : [];
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: !!process.stdin.isTTY, historySize: 100 });
  process.stdout.write(
    `Chatting with ${model}. Enter sends; end a line with \\ to go on; Ctrl-C cancels an answer; Ctrl-D exits; /reset forgets the conversation.\n`,
  );
  let answering: AbortController | undefined;
  let pending: string[] = [];
  const prompt = () => {
    rl.setPrompt(pending.length ? '... ' : '> ');
    rl.prompt();
  };
  rl.on('SIGINT', () => {
    if (answering) {
      answering.abort();
      return;
    }
    // At the prompt: drop what was being typed, keep the session.
    pending = [];
    process.stdout.write('^C (Ctrl-D exits)\n');
    rl.write(null, { ctrl: true, name: 'u' });
    prompt();
  });
  const closed = new Promise<void>((resolve) => rl.once('close', resolve));
  const lines = (async () => {
    for await (const line of rl) {
      if (answering) continue;
      if (line.endsWith('\\')) {
        pending.push(line.slice(0, -1));
        prompt();
        continue;
      }
      const text = [...pending, line].join('\n');
      pending = [];
      if (!text.trim()) {
        prompt();
        continue;
      }
      if (text.trim() === '/exit') break;
      if (text.trim() === '/reset') {
        history.splice(system ? 1 : 0);
        process.stdout.write('(conversation forgotten)\n');
        prompt();
        continue;
      }
      history.push({ role: 'user', content: text });
      answering = new AbortController();
      try {
        const answer = await streamAnswer(client, model, history, settings, (piece) => process.stdout.write(piece), answering.signal);
        history.push({ role: 'assistant', content: answer.content });
        process.stdout.write('\n');
      } catch (error) {
        history.pop();
        if (answering.signal.aborted) process.stdout.write('\n(answer cancelled)\n');
        else process.stdout.write(`\nmariner: ${(error as Error).message}\n`);
      } finally {
        answering = undefined;
      }
      prompt();
    }
  })();
  prompt();
  await Promise.race([closed, lines]);
  rl.close();
  process.stdout.write('\n');
}

export function registerChat(program: Command): void {
  program
    .command('chat')
    .argument('<model>', 'a model the project sees (mariner models list)')
    .description('chat with a model: interactive and streamed, or one prompt with -m')
    .option('-m, --message <prompt>', 'send this one prompt, stream the answer to stdout and exit ("-": read it from stdin)')
    .option('--system <text>', 'a system message first')
    .option('--temperature <t>', 'sampling temperature, 0 to 2', (v) => {
      const t = Number(v);
      if (!Number.isFinite(t) || t < 0 || t > 2) throw new UsageError(`--temperature must be between 0 and 2, not "${v}"`);
      return t;
    })
    .option('--max-tokens <n>', 'the most tokens an answer may have', integerOption('--max-tokens', 1))
    .addHelpText(
      'after',
      `
Examples:
  mariner chat demo-tiny-llama                       # interactive
  mariner chat demo-tiny-llama -m "Say hello"        # one prompt, streamed
  git diff | mariner chat my-model -m - -o json      # the prompt from stdin, the answer as JSON`,
    )
    .action(
      run(async (inv, model: string) => {
        const client = inv.client();
        const settings: Settings = { ...(inv.options['temperature'] !== undefined ? { temperature: inv.options['temperature'] } : {}) };
        if (inv.options['maxTokens'] !== undefined) settings.maxTokens = inv.options['maxTokens'];
        const system: string | undefined = inv.options['system'];
        let message: string | undefined = inv.options['message'];
        if (message === '-' || (message === undefined && !process.stdin.isTTY)) message = await readStdin();
        if (message === undefined) return interactive(client, model, system, settings);
        if (!message.trim()) throw new UsageError('the prompt is empty');
        const messages: Message[] = [...(system ? [{ role: 'system' as const, content: system }] : []), { role: 'user', content: message }];
        const table = inv.format === 'table';
        const answer = await streamAnswer(client, model, messages, settings, table ? (piece) => process.stdout.write(piece) : () => undefined);
        if (table) process.stdout.write('\n');
        else printData(inv.format as 'json' | 'yaml' | 'id', { model, content: answer.content, finishReason: answer.finishReason, usage: answer.usage });
      }),
    );
}
