import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logging.js';
import type { GatewayContext } from './context.js';
import { ApiCallRecorder, ApiUsage, type ApiCallRecord } from './usage.js';

/** The gateway's usage accounting alone: batching off the request's path, and one record per REST call. */

const call = (requestId: string): ApiCallRecord => ({
  occurredAt: new Date().toISOString(),
  requestId,
  protocol: 'graphql',
  method: 'POST',
  route: null,
  operationType: 'query',
  operationName: null,
  statusCode: 200,
  errorCode: null,
  latencyMs: 1,
  tenantId: null,
  organizationId: null,
  projectId: null,
  userId: null,
  apiKeyId: null,
  modelId: null,
});

describe('ApiCallRecorder', () => {
  it('record only appends; a full batch is written at once, the rest on stop; a failed write is kept for the next', async () => {
    const written: string[][] = [];
    let fail = false;
    let wrote: () => void = () => undefined;
    const recorder = new ApiCallRecorder({
      sink: async (calls) => {
        if (fail) throw new Error('inference component down');
        written.push(calls.map((c) => c.requestId));
        wrote();
      },
      logger: silentLogger(),
      flushIntervalMs: 600_000,
      batchSize: 3,
    });
    // Synchronous: nothing to await on a request's path.
    expect(recorder.record(call('a'))).toBeUndefined();
    recorder.record(call('b'));
    expect(written).toEqual([]);
    const firstBatch = new Promise<void>((resolve) => (wrote = resolve));
    recorder.record(call('c'));
    await firstBatch;
    expect(written).toEqual([['a', 'b', 'c']]);

    fail = true;
    recorder.record(call('d'));
    await recorder.flush();
    expect(recorder.pending()).toBe(1);
    fail = false;
    recorder.record(call('e'));
    await recorder.stop();
    expect(written).toEqual([
      ['a', 'b', 'c'],
      ['d', 'e'],
    ]);
    expect(recorder.pending()).toBe(0);
  });
});

describe('ApiUsage: one record per REST call', () => {
  const identity = {
    principal: {
      userId: 'alice',
      internalUserId: 'u1',
      tenantId: 't1',
      isServiceAccount: false,
      apiKey: { id: 'key_1', organizationId: 'org-1', projectId: 'proj-1', excludedFromRateLimiting: false },
      organizations: [],
      projects: [],
    },
    project: { organizationId: 'org-1', projectId: 'proj-1', role: 'OWNER' },
  } as unknown as NonNullable<GatewayContext['identity']>;
  const context = (requestId: string) =>
    ({ requestId, identity, worker: null, system: false, internalTokens: new Map(), _shield: { cache: {} } }) as GatewayContext;

  it('an operation from loopback under a running REST call lends it the caller; from elsewhere it is its own', () => {
    const records: ApiCallRecord[] = [];
    const usage = new ApiUsage({ record: (r) => records.push(r) });
    expect(usage.restCallStarted('req-1')).toBe(true);
    // The same id again while it runs: the REST layer takes a fresh one.
    expect(usage.restCallStarted('req-1')).toBe(false);
    expect(usage.markIfForwarded(context('req-1'), '203.0.113.9')).toBe(false);
    expect(usage.markIfForwarded(context('req-1'), '127.0.0.1')).toBe(true);
    expect(usage.markIfForwarded(context('req-2'), '127.0.0.1')).toBe(false);
    usage.attribute('req-1', identity, 'model-x');
    usage.restCallEnded({ requestId: 'req-1', method: 'POST', route: '/v1/chat/completions', statusCode: 200, errorCode: null, latencyMs: 12 });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      protocol: 'rest',
      route: '/v1/chat/completions',
      userId: 'alice',
      apiKeyId: 'key_1',
      organizationId: 'org-1',
      projectId: 'proj-1',
      tenantId: 't1',
      modelId: 'model-x',
    });
    expect(usage.restCallsRunning()).toBe(0);
  });
});
