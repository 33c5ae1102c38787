/**
 * Fan-out of a shared subscription's events to its subscribers (DESIGN §3: 10,000 followers of one
 * job must not cost 10,000 of anything per event).
 *
 * graphql-ws (6.4.2, server.ts `emit.next`) builds every `next` message itself, as
 * `JSON.stringify({ id, type: 'next', payload })`, once per subscriber: its `onNext` hook may replace
 * the payload object but not the serialisation, and a JSON replacer cannot splice raw text in
 * (`JSON.rawJSON` needs Node 21). With one upstream event going to 10,000 followers, that was 10,000
 * serialisations of the same payload, and the gateway's event loop saturated. So for subscriptions
 * the gateway writes the `next` messages itself, on the connection's socket: each event's payload is
 * serialised once (`serializeEvent`), and each subscriber's message is its own prefix
 * (`{"id":"<its id>","type":"next","payload":`) followed by those shared bytes. graphql-ws still owns
 * everything else about the operation (subscribe, validation errors, `complete`, close): the iterator
 * it is handed (`Subscriber`) yields nothing and ends when the subscription does, so graphql-ws's
 * `complete` goes out after the last `next` (the socket keeps the order of writes).
 *
 * What is left per message is its write: the TCP stream under a connection is corked for the rest of
 * the tick when a message is written (Node's stream.cork pattern), so the messages one event makes for
 * the subscribers of one connection leave in one writev, not one system call each.
 */
import type { Writable } from 'node:stream';
import type { ExecutionResult } from 'graphql';
import { ErrorCode, MarinerError } from '../lib/errors.js';

/** One event of a shared subscription, serialised once: the `next` message's payload and its closing brace. */
export interface SerializedEvent {
  readonly tail: Buffer;
}

/** The result as graphql-ws sends it (`emit.next`): the result without `errors`, then the errors' toJSON when there are any. */
export function serializeEvent(result: ExecutionResult): SerializedEvent {
  const { errors, ...rest } = result;
  const payload = errors ? { ...rest, errors: errors.map((error) => error.toJSON()) } : rest;
  return { tail: Buffer.from(`${JSON.stringify(payload)}}`) };
}

/** What a subscriber writes on: the graphql-ws connection's `ws` WebSocket. */
export interface SubscriberSocket {
  readonly readyState: number;
  send(data: Buffer, options: { binary: false }, callback: (error?: Error) => void): void;
}

/** A subscriber's connection: its WebSocket, and the TCP stream under it (the upgrade's) when known. */
export interface SubscriberConnection {
  socket: SubscriberSocket;
  stream?: Writable | undefined;
}

/** Streams corked until the next tick. */
const corked = new WeakSet<Writable>();

/** Holds the stream's writes until the end of this tick, then sends them together. */
function corkForThisTick(stream: Writable): void {
  if (corked.has(stream)) return;
  corked.add(stream);
  stream.cork();
  process.nextTick(() => {
    corked.delete(stream);
    stream.uncork();
  });
}

/** `WebSocket.OPEN` in `ws` (and the WHATWG API). */
const OPEN = 1;
const TEXT = { binary: false } as const;

/**
 * One subscriber of a shared subscription: the async iterator graphql-ws runs the operation with, and
 * the writer of its `next` messages. At most one message is in flight on the socket (handed to it, not
 * yet flushed to the kernel), as when graphql-ws awaited each send; events that arrive meanwhile wait
 * here, at most `max` of them. One more and the subscriber is dropped: the waiting events are
 * discarded and a RATE_LIMITED error goes out instead (it would hold memory forever).
 */
export class Subscriber implements AsyncIterableIterator<ExecutionResult> {
  private readonly prefix: Buffer;
  private readonly socket: SubscriberSocket;
  private readonly stream: Writable | undefined;
  private readonly waiting: SerializedEvent[] = [];
  private writing = false;
  /** open: takes events; ending: writes what waits, then ends; ended: graphql-ws has been told. */
  private state: 'open' | 'ending' | 'ended' = 'open';
  private wake: ((result: IteratorResult<ExecutionResult>) => void) | undefined;
  private left = false;
  private readonly onWritten = () => {
    this.writing = false;
    const next = this.waiting.shift();
    if (next) this.write(next);
    else if (this.state === 'ending') this.finish();
  };

  constructor(
    connection: SubscriberConnection,
    id: string,
    private readonly max: number,
    /** Called once, when the subscriber ends or graphql-ws returns it (the client completed, the connection closed). */
    private readonly onLeave: () => void,
  ) {
    this.socket = connection.socket;
    this.stream = connection.stream;
    this.prefix = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);
  }

  push(event: SerializedEvent): void {
    if (this.state !== 'open') return;
    if (!this.writing) return this.write(event);
    if (this.waiting.length >= this.max) {
      this.waiting.length = 0;
      this.waiting.push(
        serializeEvent({
          errors: [new MarinerError(ErrorCode.RATE_LIMITED, `This subscriber fell more than ${this.max} events behind and was dropped; subscribe again`)],
        }),
      );
      this.state = 'ending';
      return;
    }
    this.waiting.push(event);
  }

  /** No more events: the subscriber ends once those waiting are written. */
  end(): void {
    if (this.state !== 'open') return;
    this.state = 'ending';
    if (!this.writing && this.waiting.length === 0) this.finish();
  }

  private write(event: SerializedEvent): void {
    if (this.socket.readyState !== OPEN) {
      // A closing connection: graphql-ws returns its operations once it has closed.
      this.waiting.length = 0;
      if (this.state === 'ending') this.finish();
      return;
    }
    this.writing = true;
    if (this.stream) corkForThisTick(this.stream);
    // A text frame, as graphql-ws sends (ws would send a Buffer as binary: clients must get text to parse).
    this.socket.send(Buffer.concat([this.prefix, event.tail], this.prefix.length + event.tail.length), TEXT, this.onWritten);
  }

  private finish(): void {
    this.state = 'ended';
    this.waiting.length = 0;
    const wake = this.wake;
    this.wake = undefined;
    wake?.({ value: undefined, done: true });
    this.leave();
  }

  private leave(): void {
    if (this.left) return;
    this.left = true;
    this.onLeave();
  }

  next(): Promise<IteratorResult<ExecutionResult>> {
    if (this.state === 'ended') return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.wake = resolve));
  }

  return(): Promise<IteratorResult<ExecutionResult>> {
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}
