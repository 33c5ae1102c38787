import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, MarinerError } from './errors.js';
import { INTERNAL_TOKEN_HEADER, InternalTokens, type Identity, type InternalCaller, type Worker } from './identity.js';
import { asCaller, asSystem, asWorker, createInternalClient } from './internalClient.js';

const tokens = new InternalTokens('a-secret-of-at-least-thirty-two-characters', 60);

/** A stand-in subgraph on loopback: answers `{ caller }` with whom the token says is calling, `{ fail }` with a GraphQL error, `{ slow }` never. */
let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer(async (req, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    const { query } = JSON.parse(text) as { query: string };
    if (query.includes('slow')) return; // never answers
    res.setHeader('content-type', 'application/json');
    if (query.includes('fail')) {
      res.end(JSON.stringify({ data: null, errors: [{ message: 'No file file-x', extensions: { code: 'NOT_FOUND' } }] }));
      return;
    }
    const caller = await tokens.verify(req.headers[INTERNAL_TOKEN_HEADER] as string | undefined, 'files');
    res.end(JSON.stringify({ data: { caller } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const CALLER = parse('query Caller { caller }') as TypedDocumentNode<{ caller: InternalCaller | null }, Record<string, never>>;
const FAIL = parse('query Fail { fail }') as TypedDocumentNode<{ fail: boolean }, Record<string, never>>;
const SLOW = parse('query Slow { slow }') as TypedDocumentNode<{ slow: boolean }, Record<string, never>>;

const identity = { principal: { userId: 'u@example.com' }, project: null } as unknown as Identity;
const worker = { clusterId: 'cluster-1' } as unknown as Worker;

describe('internal client', () => {
  const files = createInternalClient({ subgraph: 'files', url: () => url, tokens, timeoutMs: 300 });

  it('mints a token for the subgraph as the caller, the system or a worker', async () => {
    const asUser = (await files.request(asCaller({ requestId: 'r1', identity }), CALLER, {})).caller;
    expect(asUser).toMatchObject({ requestId: 'r1', system: false, identity: { principal: { userId: 'u@example.com' } }, worker: null });
    expect((await files.request(asSystem('r2'), CALLER, {})).caller).toMatchObject({ requestId: 'r2', system: true, identity: null, worker: null });
    expect((await files.request(asWorker('r3', worker), CALLER, {})).caller).toMatchObject({
      system: false,
      identity: null,
      worker: { clusterId: 'cluster-1' },
    });
  });

  it('a token minted for one subgraph is refused by another', async () => {
    const models = createInternalClient({ subgraph: 'models', url, tokens });
    expect((await models.request(asSystem('r4'), CALLER, {})).caller).toBeNull();
  });

  it("throws the subgraph's GraphQL error with its code", async () => {
    const error = await files.request(asSystem('r5'), FAIL, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MarinerError);
    expect(error).toMatchObject({ code: ErrorCode.NOT_FOUND, message: 'No file file-x' });
  });

  it('a subgraph that does not answer in time fails the call, naming it', async () => {
    await expect(files.request(asSystem('r6'), SLOW, {})).rejects.toThrow('the files subgraph did not answer within 300 ms');
    await expect(files.request(asSystem('r7'), SLOW, {}, { timeoutMs: 50 })).rejects.toThrow('within 50 ms');
  });

  it("the caller's signal ends the call with the caller's reason", async () => {
    const stopping = new AbortController();
    const call = files.request(asSystem('r8'), SLOW, {}, { signal: stopping.signal });
    stopping.abort(new Error('stopping'));
    await expect(call).rejects.toThrow('stopping');
  });

  it('an unreachable subgraph fails the call, naming it', async () => {
    const gone = createInternalClient({ subgraph: 'users', url: 'http://127.0.0.1:1/graphql', tokens });
    await expect(gone.request(asSystem('r9'), CALLER, {})).rejects.toThrow(/^the call to the users subgraph failed/);
  });
});
