import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { ActiveModel, Executor, RuntimeHost, RuntimeReport } from '../../agent/executor.js';

/**
 * Stand-in runtimes for tests that run real agents over real tunnels but need no model: they answer
 * OpenAI requests (streamed or not) with a fixed text, report what the test says for the models the
 * control plane gave the cluster to run, and keep every request they received — what a cluster saw is
 * the proof in the isolation and routing tests.
 */

/** A cluster's runtimes, seen from the cluster: what it was asked to run, and every request it got. */
export interface RuntimeTap {
  host: RuntimeHost;
  /** Reconciliation passes (each nudge of the control plane starts one). */
  reconciles: number;
  received: { modelId: string; path: string; prompt: string }[];
}

/**
 * Runtimes that answer OpenAI requests with `answer` (streamed or not) and report what `report`
 * returns for the models the control plane gave the cluster to run.
 */
export function tappedRuntimes(answer: string, report: (active: ActiveModel[]) => RuntimeReport[]): RuntimeTap {
  let active: ActiveModel[] = [];
  const tap: RuntimeTap = {
    reconciles: 0,
    received: [],
    host: {
      async reconcile(models) {
        tap.reconciles++;
        active = models;
      },
      status: async () => report(active),
      forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, path: string) {
        const parts: Buffer[] = [];
        req.on('data', (part: Buffer) => parts.push(part));
        req.on('end', () => {
          const body = JSON.parse(Buffer.concat(parts).toString('utf8'));
          const prompt = path.endsWith('/chat/completions') ? body.messages.map((m: { content: string }) => m.content).join('\n') : String(body.prompt);
          tap.received.push({ modelId, path, prompt });
          const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };
          const created = Math.floor(Date.now() / 1000);
          const chat = path.endsWith('/chat/completions');
          if (body.stream) {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            const chunk = chat
              ? {
                  id: 'chatcmpl-1',
                  object: 'chat.completion.chunk',
                  created,
                  model: modelId,
                  choices: [{ index: 0, delta: { role: 'assistant', content: answer }, finish_reason: 'stop' }],
                }
              : {
                  id: 'cmpl-1',
                  object: 'text_completion',
                  created,
                  model: modelId,
                  choices: [{ index: 0, text: answer, finish_reason: 'stop', logprobs: null }],
                };
            res.write(`data: ${JSON.stringify(chunk)}\n\n`);
            res.write(`data: ${JSON.stringify({ ...chunk, choices: [], usage })}\n\n`);
            res.end('data: [DONE]\n\n');
            return;
          }
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify(
              chat
                ? {
                    id: 'chatcmpl-1',
                    object: 'chat.completion',
                    created,
                    model: modelId,
                    choices: [{ index: 0, message: { role: 'assistant', content: answer }, finish_reason: 'stop' }],
                    usage,
                  }
                : {
                    id: 'cmpl-1',
                    object: 'text_completion',
                    created,
                    model: modelId,
                    choices: [{ index: 0, text: answer, finish_reason: 'stop', logprobs: null }],
                    usage,
                  },
            ),
          );
        });
      },
      close: async () => undefined,
    },
  };
  return tap;
}

export function executorWith(runtimes: RuntimeHost): Executor {
  return {
    kind: 'local',
    kubeApi: null,
    runtimes,
    jobs: null,
    clusterStatus: async () => ({ nodes: [], gpuCapacity: 0, gpuAllocated: 0, gpuPods: [], provisionableResources: [] }),
    applyConfig: async () => undefined,
    close: async () => undefined,
  };
}

/** What a scripted runtime answers one request with: a JSON body (with its status), or server-sent events. */
export type ScriptedAnswer =
  | { status?: number; json: unknown }
  | {
      events: unknown[];
      /** No `[DONE]`: a runtime that failed mid-answer. */
      cut?: boolean;
      /** The first event is sent at once, the rest once this resolves: a stream still going while the test looks. */
      hold?: Promise<void>;
    };

/** A cluster's runtimes that answer each request as `answer` says, and keep what they received (the OpenAI bodies). */
export interface ScriptedRuntimes {
  host: RuntimeHost;
  received: { modelId: string; path: string; body: Record<string, any> }[];
}

/**
 * Runtimes that report every model they are given as ready and answer each request with what
 * `answer(path, body)` returns: for tests of what the control plane sends a runtime and makes of its
 * answer (tool calls, logprobs, refusals), which the fixed answers of tappedRuntimes cannot show.
 */
export function scriptedRuntimes(answer: (path: string, body: Record<string, any>) => ScriptedAnswer): ScriptedRuntimes {
  let active: ActiveModel[] = [];
  const runtimes: ScriptedRuntimes = {
    received: [],
    host: {
      async reconcile(models) {
        active = models;
      },
      status: async () => active.map((m) => ({ modelId: m.id, desiredReplicas: 1, readyReplicas: 1, inFlightRequests: 0, statusMessage: 'ready' })),
      forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, path: string) {
        const parts: Buffer[] = [];
        req.on('data', (part: Buffer) => parts.push(part));
        req.on('end', () => {
          const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, any>;
          runtimes.received.push({ modelId, path, body });
          const reply = answer(path, body);
          if ('events' in reply) {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            const [first, ...rest] = reply.events.map((event) => `data: ${JSON.stringify(event)}\n\n`);
            if (first) res.write(first);
            void (reply.hold ?? Promise.resolve()).then(() => {
              if (res.stream.destroyed) return;
              for (const event of rest) res.write(event);
              if (reply.cut) res.end();
              else res.end('data: [DONE]\n\n');
            });
            return;
          }
          res.writeHead(reply.status ?? 200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(reply.json));
        });
      },
      close: async () => undefined,
    },
  };
  return runtimes;
}
