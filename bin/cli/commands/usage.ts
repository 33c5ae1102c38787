import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { printData, printList } from '../output.js';
import { run } from '../command.js';

interface UsageRow {
  userId: string;
  apiKeyId: string | null;
  apiKey: { name: string } | null;
  modelId: string;
  totalRequests: number;
  failedRequests: number;
  avgLatencyMs: number;
  avgTimeToFirstTokenMs: number | null;
  totalPromptTokens: number;
  totalCompletionTokens: number;
}

/** `7d`, `24h`, `30m` or an ISO date: the start of the period. */
function since(value: string): Date {
  const relative = /^(\d+)([dhm])$/.exec(value);
  if (relative) return new Date(Date.now() - Number(relative[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000 }[relative[2] as 'd' | 'h' | 'm']);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--since must be like 7d, 24h, 30m or a date, not "${value}"`);
  return date;
}

/** A bar of `width` cells for `value` of `max`. */
function bar(value: number, max: number, width = 30): string {
  const cells = max > 0 ? Math.round((value / max) * width) : 0;
  return `${'█'.repeat(cells)}${cells === 0 && value > 0 ? '▏' : ''}`;
}

export function registerUsage(program: Command): void {
  program
    .command('usage')
    .description("the project's inference usage per model and API key over a period, with a small chart of tokens per model")
    .option('--since <when>', 'the period start: 7d, 24h, 30m or a date', '7d')
    .option('--until <when>', 'the period end (a date; default now)')
    .addHelpText('after', '\nExamples:\n  mariner usage --since 24h\n  mariner usage -o json | jq \'.items[] | select(.modelId == "mariner-demo")\'')
    .action(
      run(async (inv) => {
        const start = since(inv.options['since']);
        const end = inv.options['until'] ? since(inv.options['until']) : new Date();
        const { apiUsages } = await inv
          .client()
          .graphql<{ apiUsages: UsageRow[] }>(
            `query ($start: DateTime, $end: DateTime) { apiUsages(startTime: $start, endTime: $end) { userId apiKeyId apiKey { name } modelId totalRequests failedRequests avgLatencyMs avgTimeToFirstTokenMs totalPromptTokens totalCompletionTokens } }`,
            { start: start.toISOString(), end: end.toISOString() },
          );
        if (inv.format !== 'table') return printData(inv.format, { since: start.toISOString(), until: end.toISOString(), items: apiUsages });
        process.stdout.write(`Usage from ${start.toISOString()} to ${end.toISOString()}\n\n`);
        printList('table', apiUsages, [
          { header: 'MODEL', value: (u) => u.modelId },
          { header: 'KEY', value: (u) => u.apiKey?.name ?? u.apiKeyId ?? '(token)' },
          { header: 'USER', value: (u) => u.userId },
          { header: 'REQUESTS', value: (u) => u.totalRequests },
          { header: 'FAILED', value: (u) => u.failedRequests },
          { header: 'PROMPT TOKENS', value: (u) => u.totalPromptTokens },
          { header: 'COMPLETION TOKENS', value: (u) => u.totalCompletionTokens },
          { header: 'AVG LATENCY', value: (u) => `${Math.round(u.avgLatencyMs)} ms` },
        ]);
        const perModel = new Map<string, number>();
        for (const u of apiUsages) perModel.set(u.modelId, (perModel.get(u.modelId) ?? 0) + u.totalPromptTokens + u.totalCompletionTokens);
        if (!perModel.size) return;
        const max = Math.max(...perModel.values());
        const width = Math.max(...[...perModel.keys()].map((k) => k.length));
        process.stdout.write('\nTokens per model\n');
        for (const [model, tokens] of [...perModel].sort((a, b) => b[1] - a[1]))
          process.stdout.write(`  ${model.padEnd(width)}  ${bar(tokens, max)} ${tokens}\n`);
      }),
    );
}
