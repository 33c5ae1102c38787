import { GraphQLError, type ExecutionResult } from 'graphql';
import { MessageType, stringifyMessage } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import { serializeEvent, Subscriber, type SubscriberSocket } from './fanOut.js';

/** A connection's socket that flushes only when told (a slow client). */
class SlowSocket implements SubscriberSocket {
  readyState = 1;
  readonly sent: string[] = [];
  private readonly unflushed: ((error?: Error) => void)[] = [];
  send(data: Buffer, options: { binary: false }, callback: (error?: Error) => void): void {
    expect(options.binary).toBe(false);
    this.sent.push(data.toString('utf8'));
    this.unflushed.push(callback);
  }
  get inFlight() {
    return this.unflushed.length;
  }
  flush(): void {
    this.unflushed.shift()?.();
  }
}

const event = (n: number) => serializeEvent({ data: { jobLogs: { nextOffset: n, lines: [{ offset: n - 1, text: `line ${n}` }] } } });
const payloads = (socket: SlowSocket) => socket.sent.map((text) => JSON.parse(text) as { id: string; type: string; payload: ExecutionResult });
const settled = async (promise: Promise<unknown>) => Promise.race([promise.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 20))]);

describe("a shared subscription's subscriber", () => {
  it('sends what graphql-ws itself would send for the same result, byte for byte', () => {
    const results: ExecutionResult[] = [
      { data: { clusterTunnels: { connected: true, tunnels: [{ agentId: 'a"1', transport: 'UPGRADE' }] } } },
      { data: null, errors: [new GraphQLError('nope', { path: ['jobLogs'], extensions: { code: 'FORBIDDEN' } })] },
      { errors: [new MarinerError(ErrorCode.INTERNAL, 'The subscription source failed; subscribe again')] },
    ];
    for (const result of results) {
      const socket = new SlowSocket();
      new Subscriber({ socket }, 'op-"7"', 10, () => undefined).push(serializeEvent(result));
      const { errors, ...rest } = result;
      const graphqlWs = stringifyMessage({
        id: 'op-"7"',
        type: MessageType.Next,
        payload: { ...rest, ...(errors ? { errors: errors.map((e) => e.toJSON()) } : {}) },
      });
      expect(socket.sent).toEqual([graphqlWs]);
    }
  });

  it('has one message in flight at a time and sends the rest in order as the socket flushes', () => {
    const socket = new SlowSocket();
    const subscriber = new Subscriber({ socket }, '1', 10, () => undefined);
    for (const n of [1, 2, 3]) subscriber.push(event(n));
    expect(socket.sent).toHaveLength(1);
    socket.flush();
    socket.flush();
    expect(payloads(socket).map((m) => [m.id, m.type, (m.payload.data as any).jobLogs.nextOffset])).toEqual([
      ['1', 'next', 1],
      ['1', 'next', 2],
      ['1', 'next', 3],
    ]);
  });

  it('is dropped with RATE_LIMITED, after the message in flight, when it falls more than its bound behind; then it ends and leaves', async () => {
    const socket = new SlowSocket();
    let left = 0;
    const subscriber = new Subscriber({ socket }, 's', 2, () => left++);
    const ended = subscriber.next();
    for (const n of [1, 2, 3, 4, 5]) subscriber.push(event(n));
    socket.flush();
    const [first, dropped] = payloads(socket);
    expect((first!.payload.data as any).jobLogs.nextOffset).toBe(1);
    expect(dropped).toMatchObject({ id: 's', type: 'next', payload: { errors: [{ extensions: { code: 'RATE_LIMITED' } }] } });
    expect(await settled(ended)).toBe(false);
    socket.flush();
    expect(await ended).toEqual({ value: undefined, done: true });
    expect(left).toBe(1);
    subscriber.push(event(6));
    expect(socket.sent).toHaveLength(2);
  });

  it('writes the events still waiting before it ends, so that graphql-ws completes after the last one', async () => {
    const socket = new SlowSocket();
    const subscriber = new Subscriber({ socket }, 'c', 10, () => undefined);
    subscriber.push(event(1));
    subscriber.push(event(2));
    subscriber.end();
    const ended = subscriber.next();
    socket.flush();
    expect(socket.sent).toHaveLength(2);
    expect(await settled(ended)).toBe(false);
    socket.flush();
    expect((await ended).done).toBe(true);
  });

  it('writes nothing more once graphql-ws returns it (the client completed, the connection closed), and leaves once', async () => {
    const socket = new SlowSocket();
    let left = 0;
    const subscriber = new Subscriber({ socket }, 'r', 10, () => left++);
    subscriber.push(event(1));
    subscriber.push(event(2));
    expect(await subscriber.return()).toEqual({ value: undefined, done: true });
    socket.flush();
    subscriber.push(event(3));
    subscriber.end();
    expect(socket.sent).toHaveLength(1);
    expect(left).toBe(1);
  });

  it('writes nothing on a closing connection', async () => {
    const socket = new SlowSocket();
    socket.readyState = 2;
    const subscriber = new Subscriber({ socket }, 'x', 10, () => undefined);
    subscriber.push(event(1));
    subscriber.end();
    expect(socket.sent).toEqual([]);
    expect((await subscriber.next()).done).toBe(true);
  });
});
