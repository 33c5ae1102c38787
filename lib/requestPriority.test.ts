import { describe, expect, it } from 'vitest';
import { InteractiveTraffic, priorityOf } from './requestPriority.js';

describe('request priority', () => {
  it('only the header value batch lowers a request; anything else is interactive', () => {
    expect(priorityOf('batch')).toBe('batch');
    for (const value of [undefined, '', 'interactive', 'BATCH', ['batch']]) expect(priorityOf(value)).toBe('interactive');
  });

  it('batch work waiting on interactive traffic starts once the last interactive request ends', async () => {
    const traffic = new InteractiveTraffic();
    let finishFirst!: () => void;
    let finishSecond!: () => void;
    const first = traffic.during(() => new Promise<void>((resolve) => (finishFirst = resolve)));
    const second = traffic.during(() => new Promise<void>((resolve) => (finishSecond = resolve)));
    const order: string[] = [];
    const waiting = traffic.idle(60_000).then(() => order.push('batch'));
    finishFirst();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]);
    finishSecond();
    await second;
    await waiting;
    expect(order).toEqual(['batch']);
    // Nothing interactive running: no wait at all.
    await traffic.idle(60_000);
  });

  it('interactive traffic is recent while a request runs and for the window after the last one ends', async () => {
    const traffic = new InteractiveTraffic();
    expect(traffic.recent(60_000)).toBe(false);
    let finish!: () => void;
    const running = traffic.during(() => new Promise<void>((resolve) => (finish = resolve)));
    expect(traffic.recent(0)).toBe(true);
    finish();
    await running;
    expect(traffic.recent(60_000)).toBe(true);
    expect(traffic.recent(0)).toBe(false);
  });

  it('a steady stream of interactive requests holds batch work back at most maxWaitMs', async () => {
    const traffic = new InteractiveTraffic();
    let finish!: () => void;
    const running = traffic.during(() => new Promise<void>((resolve) => (finish = resolve)));
    await traffic.idle(20);
    finish();
    await running;
  });
});
