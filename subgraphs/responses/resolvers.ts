import { conflict, notFound } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import { projectScopeOf } from '../../lib/identity.js';
import type { ResponsesContext } from './context.js';
import type { Resolvers, ResponseStatus } from './generated/resolvers.js';
import type { ProjectScope, ResponseItemModel, ResponseRow } from './store.js';
import { validRecord } from './validation.js';

const scopeOf = (ctx: ResponsesContext): ProjectScope => projectScopeOf(ctx.identity);

const string = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/** The text of a message's content (a string, or its text parts joined); of a function call's output likewise. */
function textOf(content: unknown): string | null {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return null;
  return content
    .map((part: { type?: unknown; text?: unknown }) => (part && typeof part.text === 'string' ? part.text : ''))
    .filter(Boolean)
    .join('\n');
}

/** A response's output items, as stored in its body. */
function outputOf(body: Record<string, unknown>): ResponseItemModel[] {
  const output = Array.isArray(body['output']) ? (body['output'] as Record<string, unknown>[]) : [];
  return output.map((item) => ({ id: String(item['id']), item }));
}

const unixToIso = (value: unknown): string | null => (typeof value === 'number' ? new Date(value * 1000).toISOString() : null);

export const resolvers: Resolvers<ResponsesContext> = {
  Query: {
    response: async (_p, { id }, ctx) => (await ctx.store.response(scopeOf(ctx), assertId('response', id, 'id'))) ?? null,
    responseInputItems: async (_p, { responseId, after, limit, order }, ctx) => {
      const response = await ctx.store.response(scopeOf(ctx), assertId('response', responseId, 'responseId'));
      if (!response) throw notFound('response', responseId);
      // OpenAI API: input items are listed newest first unless asked otherwise.
      return ctx.store.inputItems(response.id, { after, limit, order: order === 'ASC' ? 'asc' : 'desc' });
    },
  },
  Mutation: {
    recordResponse: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const record = validRecord(input);
      // A chain stays in its project: a link to a response the caller's project does not hold is not found.
      if (record.previousResponseId && !(await ctx.store.response(scope, record.previousResponseId))) {
        throw notFound('response', record.previousResponseId);
      }
      const stored = await ctx.store.insert(
        {
          id: record.id,
          tenant_id: scope.tenantId,
          organization_id: scope.organizationId,
          project_id: scope.projectId,
          created_by: ctx.identity!.principal.userId,
          previous_response_id: record.previousResponseId,
          model: record.model,
          status: record.status,
          body: record.body,
        },
        record.inputItems,
      );
      if (!stored) throw conflict(`A response ${record.id} is already stored`);
      return stored;
    },
    deleteResponse: async (_p, { id }, ctx) => {
      if (!(await ctx.store.delete(scopeOf(ctx), assertId('response', id, 'id')))) throw notFound('response', id);
      return { id, deleted: true };
    },
  },
  Response: {
    status: (row: ResponseRow) => row.status.toUpperCase() as ResponseStatus,
    createdAt: (row: ResponseRow) => row.created_at.toISOString(),
    completedAt: (row: ResponseRow) => unixToIso(row.body['completed_at']),
    instructions: (row: ResponseRow) => string(row.body['instructions']),
    previousResponseId: (row: ResponseRow) => row.previous_response_id,
    output: (row: ResponseRow) => outputOf(row.body),
    outputText: (row: ResponseRow) =>
      outputOf(row.body)
        .filter(({ item }) => item['type'] === 'message')
        .map(({ item }) => textOf(item['content']) ?? '')
        .join(''),
    usage: (row: ResponseRow) => {
      const usage = row.body['usage'] as { input_tokens?: unknown; output_tokens?: unknown; total_tokens?: unknown } | null | undefined;
      if (!usage || typeof usage.input_tokens !== 'number' || typeof usage.output_tokens !== 'number') return null;
      return {
        inputTokens: usage.input_tokens,
        outputTokens: usage.output_tokens,
        totalTokens: Number(usage.total_tokens ?? usage.input_tokens + usage.output_tokens),
      };
    },
    error: (row: ResponseRow) => {
      const error = row.body['error'] as { code?: unknown; message?: unknown } | null | undefined;
      return error ? { code: String(error.code ?? 'server_error'), message: String(error.message ?? '') } : null;
    },
    projectId: (row: ResponseRow) => row.project_id,
    body: (row: ResponseRow) => row.body,
    conversation: async (row: ResponseRow, _args, ctx) => {
      const chain = await ctx.store.chain(scopeOf(ctx), row.id);
      return chain.flatMap((link) => [...link.inputItems, ...outputOf(link.row.body)]);
    },
  },
  ResponseItem: {
    type: ({ item }) => String(item['type']),
    role: ({ item }) => string(item['role']),
    text: ({ item }) => (item['type'] === 'message' ? textOf(item['content']) : null),
    callId: ({ item }) => string(item['call_id']),
    name: ({ item }) => string(item['name']),
    arguments: ({ item }) => string(item['arguments']),
    output: ({ item }) => (item['type'] === 'function_call_output' ? textOf(item['output']) : null),
    item: ({ item }) => item,
  },
};
