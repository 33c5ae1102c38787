import { describe, expect, it } from 'vitest';
import { PrefixHashRing, prefixHashSettings, routingKeyOf } from '../lib/prefixHashRing.js';

const keys = Array.from({ length: 3000 }, (_, i) => `prefix:system prompt number ${i}`);

describe('the prefix hash ring', () => {
  it('spreads keys over the replicas roughly evenly', () => {
    const ring = new PrefixHashRing(['r0', 'r1', 'r2']);
    const counts = new Map<string, number>();
    for (const key of keys) {
      const replica = ring.pick(key, () => 0)!;
      counts.set(replica, (counts.get(replica) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(['r0', 'r1', 'r2']);
    // With 100 virtual nodes each, every replica gets between 20% and 47% of the keys (1/3 ideal).
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(keys.length * 0.2);
      expect(count).toBeLessThan(keys.length * 0.47);
    }
  });

  it('sends the same key to the same replica every time, whatever the order replicas are listed in', () => {
    const a = new PrefixHashRing(['r0', 'r1', 'r2']);
    const b = new PrefixHashRing(['r2', 'r0', 'r1']);
    for (const key of keys.slice(0, 200)) expect(a.pick(key, () => 0)).toBe(b.pick(key, () => 0));
  });

  it('moves only about 1/n of the keys when a replica is added, and only the removed replica’s keys when one goes', () => {
    const three = new PrefixHashRing(['r0', 'r1', 'r2']);
    const four = new PrefixHashRing(['r0', 'r1', 'r2', 'r3']);
    const before = keys.map((key) => three.pick(key, () => 0));
    const after = keys.map((key) => four.pick(key, () => 0));
    const moved = before.filter((replica, i) => replica !== after[i]);
    // Every key that moved went to the new replica, and about a quarter moved.
    expect(moved.length).toBeGreaterThan(keys.length * 0.15);
    expect(moved.length).toBeLessThan(keys.length * 0.35);
    after.forEach((replica, i) => {
      if (replica !== before[i]) expect(replica).toBe('r3');
    });
    const two = new PrefixHashRing(['r0', 'r2']);
    keys.forEach((key, i) => {
      if (before[i] !== 'r1') expect(two.pick(key, () => 0)).toBe(before[i]);
    });
  });

  it('honours the load bound: a busy replica is passed over for the next one clockwise', () => {
    const ring = new PrefixHashRing(['r0', 'r1', 'r2']);
    const key = keys[0]!;
    const [first, second] = ring.walk(key);
    // Loads 4/0/0: bound = 1.25 × 5 / 3 ≈ 2.08; the first replica (4 + 1 > 2.08) is skipped.
    const loads = new Map([[first!, 4]]);
    expect(ring.pick(key, (r) => loads.get(r) ?? 0)).toBe(second);
    // Equal loads 1/1/1: with epsilon 1 the bound is 2 × 4 / 3 ≈ 2.67, so the key's own replica keeps it.
    expect(ring.pick(key, () => 1, 1)).toBe(first);
  });

  it('never lets one replica take more than its bound while many requests of one hot prefix arrive', () => {
    const ring = new PrefixHashRing(['r0', 'r1', 'r2']);
    const loads = new Map<string, number>([
      ['r0', 0],
      ['r1', 0],
      ['r2', 0],
    ]);
    const epsilon = 0.25;
    for (let n = 1; n <= 30; n++) {
      const replica = ring.pick('prefix:one hot system prompt', (r) => loads.get(r)!, epsilon)!;
      loads.set(replica, loads.get(replica)! + 1);
      const bound = Math.ceil(((1 + epsilon) * n) / 3);
      for (const load of loads.values()) expect(load).toBeLessThanOrEqual(bound);
    }
  });

  it('falls back to the least loaded replica when every one is over the bound, and answers nothing on an empty ring', () => {
    const ring = new PrefixHashRing(['r0', 'r1']);
    // epsilon -1: the bound is 0, nobody is under it.
    const loads: Record<string, number> = { r0: 3, r1: 2 };
    expect(ring.pick('k', (r) => loads[r]!, -1)).toBe('r1');
    expect(new PrefixHashRing([]).pick('k', () => 0)).toBeUndefined();
  });
});

describe('the routing key of a request', () => {
  it('is the first characters of the prompt, so requests sharing a long prefix share a key', () => {
    const system = 'You are a helpful assistant. '.repeat(100);
    const a = routingKeyOf(
      {
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: 'question A' },
        ],
      },
      1024,
    );
    const b = routingKeyOf(
      {
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: 'question B' },
        ],
      },
      1024,
    );
    const c = routingKeyOf(
      {
        messages: [
          { role: 'system', content: `Other. ${system}` },
          { role: 'user', content: 'question A' },
        ],
      },
      1024,
    );
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(a!.length).toBeLessThanOrEqual(1024 + 'prefix:'.length);
  });

  it('reads text parts, completions prompts and responses input', () => {
    const parts = routingKeyOf({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }] }, 64);
    expect(parts).toContain('hello');
    expect(routingKeyOf({ prompt: 'once upon a time' }, 4)).toBe('prefix:once');
    expect(routingKeyOf({ input: 'abcdef' }, 3)).toBe('prefix:abc');
  });

  it('prefers an explicit session key (user or prompt_cache_key) to the prompt', () => {
    expect(routingKeyOf({ user: 'alice', messages: [{ role: 'user', content: 'x' }] }, 64)).toBe('user:alice');
    expect(routingKeyOf({ prompt_cache_key: 's1', user: 'alice' }, 64)).toBe('prompt_cache_key:s1');
  });

  it('is undefined for a body without a prompt', () => {
    expect(routingKeyOf({}, 64)).toBeUndefined();
    expect(routingKeyOf(null, 64)).toBeUndefined();
    expect(routingKeyOf('text', 64)).toBeUndefined();
  });

  it('settings take defaults for what is absent', () => {
    expect(prefixHashSettings({ prefixChars: 10 })).toEqual({ prefixChars: 10, epsilon: 0.25, virtualNodes: 100 });
  });
});
