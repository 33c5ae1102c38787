import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../lib/errors.js';
import { createSubscriptionLimits } from './subscriptionLimits.js';

/** A connection with `n` operations open (graphql-ws counts the one being subscribed already). */
const connection = (owner: string, n: number) => ({ owner, operations: Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), {}])) });

describe('limits on operations open over graphql-ws', () => {
  it('refuses one operation more than a connection may hold, with RATE_LIMITED', () => {
    const limits = createSubscriptionLimits({ maxPerConnection: 2, maxPerUser: 10 });
    const full = connection('user:t:u', 2);
    limits.add(full);
    expect(limits.refusal(full)).toBeNull();
    full.operations['2'] = {};
    expect(limits.refusal(full)?.extensions['code']).toBe(ErrorCode.RATE_LIMITED);
  });

  it("counts a user's operations across their connections, and forgets a closed connection", () => {
    const limits = createSubscriptionLimits({ maxPerConnection: 10, maxPerUser: 3 });
    const first = connection('user:t:u', 2);
    const second = connection('user:t:u', 2);
    const someoneElse = connection('user:t:v', 2);
    for (const c of [first, second, someoneElse]) limits.add(c);
    expect(limits.refusal(second)?.message).toContain('for one user');
    expect(limits.refusal(someoneElse)).toBeNull();
    limits.remove(first);
    expect(limits.refusal(second)).toBeNull();
  });
});
