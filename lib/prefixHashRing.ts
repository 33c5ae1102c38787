import { createHash } from 'node:crypto';

/**
 * Consistent hashing with bounded loads (CHWBL; Mirrokni, Thorup, Zadimoghaddam 2018, as KubeAI's
 * PrefixHash load balancing uses it): each replica sits on a hash ring at `virtualNodes` points; a
 * request's key (a prefix of its prompt, or a session key) is hashed and walked clockwise to the first
 * replica whose load is under `(1 + epsilon) ×` the average load (counting this request); when none is,
 * the least loaded replica takes it. Requests sharing a prefix thus land on the replica whose KV cache
 * already holds it, and a hot prefix spills over instead of queueing behind one replica. Adding or
 * removing a replica moves only about 1/n of the keys (the points of the others stay where they are).
 *
 * Pure: no I/O, no clock; the caller gives the loads (requests in flight) at the time of the choice.
 */

/** How a model's requests are spread over its replicas (`RuntimeConfig.loadBalancing`). */
export type LoadBalancing = 'LEAST_IN_FLIGHT' | 'PREFIX_HASH';

/** The prefix-hash settings of a model (`RuntimeConfig.prefixHash`). */
export interface PrefixHashSettings {
  /** How many characters of the prompt's text form the key (default 1024). */
  prefixChars: number;
  /** The load bound's slack: a replica takes a request while its load is under (1 + epsilon) × average (default 0.25). */
  epsilon: number;
  /** Points per replica on the ring (default 100). */
  virtualNodes: number;
}

export const DEFAULT_PREFIX_HASH: PrefixHashSettings = { prefixChars: 1024, epsilon: 0.25, virtualNodes: 100 };

/** The settings with defaults for what is absent. */
export function prefixHashSettings(given?: Partial<PrefixHashSettings> | null): PrefixHashSettings {
  return {
    prefixChars: given?.prefixChars ?? DEFAULT_PREFIX_HASH.prefixChars,
    epsilon: given?.epsilon ?? DEFAULT_PREFIX_HASH.epsilon,
    virtualNodes: given?.virtualNodes ?? DEFAULT_PREFIX_HASH.virtualNodes,
  };
}

/** A 32-bit position on the ring (the first 4 bytes of SHA-1: fast enough, and evenly spread). */
export function ringPosition(text: string): number {
  return createHash('sha1').update(text).digest().readUInt32BE(0);
}

/** A ring over a set of replica names; build one per set of replicas (cheap to cache by the set). */
export class PrefixHashRing {
  /** Sorted positions, and the replica at each. */
  private readonly positions: number[];
  private readonly owners: string[];

  constructor(
    readonly replicas: readonly string[],
    readonly virtualNodes = DEFAULT_PREFIX_HASH.virtualNodes,
  ) {
    const points: Array<[number, string]> = [];
    for (const replica of new Set(replicas)) for (let i = 0; i < virtualNodes; i++) points.push([ringPosition(`${replica}#${i}`), replica]);
    // Ties (rare) broken by name, so that every process builds the same ring.
    points.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    this.positions = points.map((p) => p[0]);
    this.owners = points.map((p) => p[1]);
  }

  /** The replicas in the order the key walks them clockwise (each once). */
  walk(key: string): string[] {
    const n = this.positions.length;
    if (n === 0) return [];
    const at = ringPosition(key);
    // The first point at or after the key's position (binary search), wrapping around.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.positions[mid]! < at) lo = mid + 1;
      else hi = mid;
    }
    const seen = new Set<string>();
    const order: string[] = [];
    for (let i = 0; i < n && seen.size < this.replicas.length; i++) {
      const owner = this.owners[(lo + i) % n]!;
      if (seen.has(owner)) continue;
      seen.add(owner);
      order.push(owner);
    }
    return order;
  }

  /**
   * The replica for a request with this key: the first clockwise whose load is under the bound
   * `(1 + epsilon) × (total load + 1) / replicas` (the request counted), else the least loaded.
   * `load` gives a replica's requests in flight now. Undefined when the ring is empty.
   */
  pick(key: string, load: (replica: string) => number, epsilon = DEFAULT_PREFIX_HASH.epsilon): string | undefined {
    const order = this.walk(key);
    if (order.length === 0) return undefined;
    const total = order.reduce((sum, replica) => sum + load(replica), 0);
    const bound = ((1 + epsilon) * (total + 1)) / order.length;
    for (const replica of order) if (load(replica) + 1 <= bound) return replica;
    return order.reduce((best, replica) => (load(replica) < load(best) ? replica : best));
  }
}

/** The text of a message's content: a string, or the text parts of an array of parts. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) {
    if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') text += (part as { text: string }).text;
  }
  return text;
}

/**
 * The routing key of an OpenAI request body (chat completions, completions, responses): an explicit
 * session key when given (the `user` field, or `prompt_cache_key` as OpenAI names it), else the first
 * `prefixChars` characters of the prompt's text (the messages' roles and contents in order, or the
 * prompt, or the input). Undefined when the body has neither (the caller balances by load alone).
 */
export function routingKeyOf(body: unknown, prefixChars: number): string | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const request = body as Record<string, unknown>;
  for (const field of ['prompt_cache_key', 'user'] as const) {
    const value = request[field];
    if (typeof value === 'string' && value !== '') return `${field}:${value.slice(0, 1024)}`;
  }
  let text = '';
  if (Array.isArray(request.messages)) {
    for (const message of request.messages) {
      if (text.length >= prefixChars) break;
      if (!message || typeof message !== 'object') continue;
      const { role, content } = message as { role?: unknown; content?: unknown };
      text += `${typeof role === 'string' ? role : ''}\u0000${contentText(content)}\u0000`;
    }
  } else if (typeof request.prompt === 'string') text = request.prompt;
  else if (Array.isArray(request.prompt) && typeof request.prompt[0] === 'string') text = request.prompt[0];
  else if (typeof request.input === 'string') text = request.input;
  else if (Array.isArray(request.input)) text = JSON.stringify(request.input).slice(0, prefixChars * 2);
  if (text === '') return undefined;
  return `prefix:${text.slice(0, prefixChars)}`;
}
