import { describe, expect, it } from 'vitest';
import { SequenceQueue } from './sequenceQueue.js';

const open = () => new AbortController().signal;

/** Resolves to the names of the promises settled so far, in settling order. */
function settledOrder(entries: Record<string, Promise<unknown>>) {
  const order: string[] = [];
  for (const [name, promise] of Object.entries(entries)) void promise.then(() => order.push(name));
  return order;
}

describe('the runtime serves interactive requests ahead of a batch’s', () => {
  it('a waiting interactive request gets the next free sequence before batch requests that came first', async () => {
    const queue = new SequenceQueue(['s1', 's2']);
    const first = await queue.acquire('interactive', open());
    const second = await queue.acquire('interactive', open());
    const batch = queue.acquire('batch', open());
    const interactive = queue.acquire('interactive', open());
    const order = settledOrder({ batch, interactive });
    queue.release(first);
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual(['interactive']);
    // Released by the interactive ones: now the batch request may start.
    queue.release(await interactive);
    queue.release(second);
    await batch;
    expect(order).toEqual(['interactive', 'batch']);
  });

  it('a batch never takes the last free sequence, so an interactive request arriving finds one', async () => {
    const queue = new SequenceQueue(['s1', 's2', 's3']);
    const a = await queue.acquire('batch', open());
    const b = await queue.acquire('batch', open());
    const third = queue.acquire('batch', open());
    const order = settledOrder({ third });
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    expect(queue.state).toEqual({ holding: { interactive: 0, batch: 2 }, waiting: { interactive: 0, batch: 1 } });
    const interactive = await queue.acquire('interactive', open());
    expect([a, b]).not.toContain(interactive);
    queue.release(interactive);
    queue.release(a);
    expect(await third).toBeDefined();
    queue.release(b);
  });

  it('no batch request starts while an interactive one is generating; it starts once that one ends', async () => {
    const queue = new SequenceQueue(['s1', 's2', 's3']);
    const interactive = await queue.acquire('interactive', open());
    const batch = queue.acquire('batch', open());
    const order = settledOrder({ batch });
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    queue.release(interactive);
    await batch;
    expect(queue.state.holding).toEqual({ interactive: 0, batch: 1 });
  });

  it('with one sequence a batch request takes it while no interactive request is there', async () => {
    const queue = new SequenceQueue(['only']);
    const batch = await queue.acquire('batch', open());
    expect(batch).toBe('only');
    const interactive = queue.acquire('interactive', open());
    const next = queue.acquire('batch', open());
    const order = settledOrder({ interactive, next });
    queue.release(batch);
    queue.release(await interactive);
    await next;
    expect(order).toEqual(['interactive', 'next']);
  });

  it('a batch request held back longer than its hold takes a free sequence (a trickle of interactive requests does not starve a batch)', async () => {
    let now = 0;
    const queue = new SequenceQueue(['s1', 's2', 's3'], { maxHoldMs: 50, now: () => now });
    const interactive = await queue.acquire('interactive', open());
    const batch = queue.acquire('batch', open());
    const order = settledOrder({ batch });
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    now = 60;
    await batch;
    expect(queue.state.holding).toEqual({ interactive: 1, batch: 1 });
    queue.release(interactive);
  });

  it('a batch request held back past its hold still leaves the last free sequence to interactive requests', async () => {
    let now = 0;
    const queue = new SequenceQueue(['s1', 's2', 's3'], { maxHoldMs: 50, now: () => now });
    const interactive = await queue.acquire('interactive', open());
    const a = queue.acquire('batch', open());
    const b = queue.acquire('batch', open());
    const order = settledOrder({ a, b });
    now = 60;
    await a;
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(order).toEqual(['a']);
    expect(queue.state).toEqual({ holding: { interactive: 1, batch: 1 }, waiting: { interactive: 0, batch: 1 } });
    const next = await queue.acquire('interactive', open());
    queue.release(next);
    queue.release(interactive);
    queue.release(await a);
    await b;
  });

  it('a request whose client left is dropped from the queue, counted, and frees its turn', async () => {
    let dropped = 0;
    const queue = new SequenceQueue(['s1'], { onDropped: () => dropped++ });
    const held = await queue.acquire('interactive', open());
    const leaving = new AbortController();
    const gone = queue.acquire('interactive', leaving.signal);
    const batch = queue.acquire('batch', open());
    leaving.abort(new Error('the client disconnected'));
    await expect(gone).rejects.toThrow('the client disconnected');
    expect(dropped).toBe(1);
    queue.release(held);
    expect(await batch).toBe('s1');
  });
});
