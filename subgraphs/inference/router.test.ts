import http2, { type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MarinerError } from '../../lib/errors.js';
import { serverSentEvents } from './router.js';

/**
 * The streamed-answer parser against a runtime on loopback HTTP/2 (what the tunnel gives it): each
 * test's runtime writes its answer through `answer`, and the parser reads the client side.
 */
describe('serverSentEvents: reading a runtime streamed answer', () => {
  let server: Http2Server;
  let client: ClientHttp2Session;
  /** Streams the server has closed (cancelled by the reader), by path. */
  const closed = new Map<string, Promise<void>>();
  let answer: (stream: ServerHttp2Stream, path: string) => void = () => undefined;

  beforeAll(async () => {
    server = http2.createServer();
    server.on('stream', (stream, headers) => {
      const path = String(headers[':path']);
      closed.set(path, new Promise((resolve) => stream.once('close', () => resolve())));
      stream.on('error', () => undefined);
      answer(stream, path);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  afterAll(async () => {
    client?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  const read = async (path: string, maxEventChars?: number) => {
    const stream = client.request({ ':path': path });
    const events: unknown[] = [];
    try {
      for await (const event of serverSentEvents(stream, maxEventChars)) events.push(event);
      return { events, error: null };
    } catch (error) {
      return { events, error: error as MarinerError };
    }
  };

  it('a runtime that never ends an event: the stream stops with UNAVAILABLE at the bound, and the runtime is cancelled', async () => {
    answer = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'text/event-stream' });
      stream.write('data: {"n":1}\n\n');
      // An endless event: 64 KiB pieces, never a blank line, the stream left open.
      const piece = `data: ${'x'.repeat(64 * 1024)}`;
      const more = () => {
        while (!stream.destroyed && stream.write(piece));
        if (!stream.destroyed) stream.once('drain', more);
      };
      more();
    };
    const { events, error } = await read('/endless', 256 * 1024);
    expect(events).toEqual([{ n: 1 }]);
    expect(error).toBeInstanceOf(MarinerError);
    expect(error!.code).toBe('UNAVAILABLE');
    expect(error!.message).toContain('longer than 262144 characters');
    // The runtime sees the request cancelled: it stops generating.
    await closed.get('/endless');
  });

  it('the default bound is 1 Mi characters: an event just under it is read whole', async () => {
    const text = 'y'.repeat(1024 * 1024 - 100);
    answer = (stream) => {
      stream.respond({ ':status': 200 });
      stream.end(`data: {"text":"${text}"}\n\ndata: [DONE]\n\n`);
    };
    const { events, error } = await read('/large');
    expect(error).toBeNull();
    expect(events).toEqual([{ text }]);
  });

  it('a character split across two chunks arrives whole', async () => {
    const bytes = Buffer.from('data: {"text":"é✓"}\n\ndata: [DONE]\n\n');
    const split = bytes.indexOf(Buffer.from('✓')) + 1;
    answer = (stream) => {
      stream.respond({ ':status': 200 });
      stream.write(bytes.subarray(0, split), () => setImmediate(() => stream.end(bytes.subarray(split))));
    };
    const { events, error } = await read('/split');
    expect(error).toBeNull();
    expect(events).toEqual([{ text: 'é✓' }]);
  });

  it('a stream cut before [DONE] ends with UNAVAILABLE after the events it carried', async () => {
    answer = (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('data: {"n":1}\n\ndata: {"n":2}\n');
    };
    const { events, error } = await read('/cut');
    expect(events).toEqual([{ n: 1 }]);
    expect(error!.message).toContain('stopped before the stream finished');
  });
});
