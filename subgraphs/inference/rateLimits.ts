import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Identity } from '../../lib/identity.js';
import type { RateLimitStore, RateLimitWindowRow, WindowLimits } from './store.js';

/** Requests and tokens per minute for each API key; 0 leaves that dimension unlimited. */
export interface RateLimitSettings {
  requestsPerMinute: number;
  tokensPerMinute: number;
}

/** The state of a key's budgets, as OpenAI's `x-ratelimit-*` response headers report it. */
export interface RateLimitState {
  limitRequests: number;
  remainingRequests: number;
  limitTokens: number;
  remainingTokens: number;
  resetsAt: Date;
  resetInMs: number;
}

/** OpenAI's limits are per minute. */
const WINDOW_SECONDS = 60;

/** Refused: the key's budget for this window is spent (OpenAI API: 429 `rate_limit_exceeded`). */
export class RateLimitedError extends MarinerError {
  constructor(readonly state: RateLimitState) {
    const what = state.limitRequests > 0 && state.remainingRequests <= 0 ? `${state.limitRequests} requests` : `${state.limitTokens} tokens`;
    super(ErrorCode.RATE_LIMITED, `Rate limit reached for this API key: ${what} per minute. Retry in ${Math.ceil(state.resetInMs / 1000)} s`);
  }
}

/**
 * Per-API-key rate limits (LLMariner inference manager, §1 step 2: per key, unless the key is
 * `excludedFromRateLimiting`). A window of one minute per key, starting with its first request, in
 * Postgres: every replica of the inference subgraph admits against the same row, so the limit holds
 * however many replicas serve. A request is admitted while the window has requests left and its
 * tokens are not spent; the tokens a request uses (prompt + completion) are known only from the
 * response's usage, and are charged then — so the request that spends the last tokens still runs,
 * and the next one is refused.
 */
export class RateLimiter {
  private readonly limits: WindowLimits;

  constructor(
    private readonly store: RateLimitStore,
    settings: RateLimitSettings,
  ) {
    this.limits = { windowSeconds: WINDOW_SECONDS, requests: settings.requestsPerMinute, tokens: settings.tokensPerMinute };
  }

  /** The key the caller's requests count against, or null when they are not limited. */
  keyOf(identity: Identity | null): string | null {
    if (this.limits.requests === 0 && this.limits.tokens === 0) return null;
    const apiKey = identity?.principal.apiKey;
    // LLMariner limits API keys; calls with an OIDC token (no key) are not limited.
    if (!apiKey || apiKey.excludedFromRateLimiting) return null;
    return apiKey.id;
  }

  /** Counts one request of the caller; throws RateLimitedError when its budget is spent. */
  async admit(identity: Identity | null): Promise<string | null> {
    return (await this.admitWithState(identity)).key;
  }

  /**
   * Counts one request of the caller, as `admit`, and returns with its key the budgets left after it
   * (null for a caller that is not limited): read from the row the admission itself returned, so the
   * `x-ratelimit-*` headers of the response cost no second query (DESIGN §3: no second round trip for
   * rate-limit headers). Throws RateLimitedError when the budget is spent.
   */
  async admitWithState(identity: Identity | null): Promise<{ key: string | null; state: RateLimitState | null }> {
    const key = this.keyOf(identity);
    if (!key) return { key: null, state: null };
    const admitted = await this.store.admit(key, this.limits);
    if (admitted) return { key, state: this.stateOf(admitted) };
    // Refused: the refusal is rare, and its state is read afresh.
    const spent = await this.store.current(key, this.limits);
    // The window ended between the two reads: a retry at once will be admitted.
    throw new RateLimitedError(spent ? this.stateOf(spent) : this.fresh());
  }

  /** Charges a finished request's tokens to its key's window. */
  async charge(key: string | null, tokens: number): Promise<void> {
    if (key) await this.store.charge(key, tokens);
  }

  /** The caller's budgets now; null when the caller is not limited. */
  async state(identity: Identity | null): Promise<RateLimitState | null> {
    const key = this.keyOf(identity);
    if (!key) return null;
    const row = await this.store.current(key, this.limits);
    return row ? this.stateOf(row) : this.fresh();
  }

  private stateOf(row: RateLimitWindowRow): RateLimitState {
    const resetsAt = new Date(row.window_start.getTime() + this.limits.windowSeconds * 1000);
    return {
      limitRequests: this.limits.requests,
      remainingRequests: this.limits.requests === 0 ? 0 : Math.max(0, this.limits.requests - row.requests),
      limitTokens: this.limits.tokens,
      remainingTokens: this.limits.tokens === 0 ? 0 : Math.max(0, this.limits.tokens - row.tokens),
      resetsAt,
      resetInMs: Math.max(0, resetsAt.getTime() - row.now.getTime()),
    };
  }

  /** No window open: everything is left, and a window would last a whole minute. */
  private fresh(): RateLimitState {
    const now = new Date();
    return {
      limitRequests: this.limits.requests,
      remainingRequests: this.limits.requests,
      limitTokens: this.limits.tokens,
      remainingTokens: this.limits.tokens,
      resetsAt: new Date(now.getTime() + this.limits.windowSeconds * 1000),
      resetInMs: this.limits.windowSeconds * 1000,
    };
  }
}
