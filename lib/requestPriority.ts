/**
 * How urgent an inference request is, from the platform to the runtime that serves it. A batch's
 * requests (subgraphs/batches) are `batch`: the local runtime (agent/runtimes/sequenceQueue.ts) starts
 * one only when no interactive request is waiting or generating, and keeps a sequence free for the
 * interactive ones (issue 17: interactive latency holds while a batch runs). Everything else is
 * `interactive`. The header is set by the inference data plane only (subgraphs/inference/completions.ts,
 * from the data plane call's `priority`), never taken from a client: at worst it lowers the platform's
 * own batch work. Runtimes that do not know it (vLLM, Ollama) ignore it.
 */
export type RequestPriority = 'interactive' | 'batch';

export const PRIORITY_HEADER = 'x-mariner-priority';

/** The priority a header value names; anything but `batch` is interactive. */
export function priorityOf(value: string | string[] | undefined): RequestPriority {
  return value === 'batch' ? 'batch' : 'interactive';
}
