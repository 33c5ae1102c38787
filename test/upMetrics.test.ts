import type { IncomingMessage } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromLoopback } from '../bin/metrics.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';

/**
 * Issue 24 item 10: `mariner up` serves Prometheus metrics at /metrics on its port (as `mariner serve`
 * components do on their operations port), to this machine only: the series name every tenant's models
 * and clusters.
 */
let t: TestPlatform;

beforeAll(async () => {
  t = await startTestPlatform({ embedded: true });
});
afterAll(async () => {
  await t?.close();
});

describe('mariner up: /metrics', () => {
  it('answers Prometheus text with the GraphQL, REST and process series', async () => {
    await t.gqlOk('query Me { organizations { items { id } } }');
    await new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 }).models.list();
    const response = await fetch(`${t.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    expect(text).toMatch(/mariner_graphql_requests_total\{[^}]*operation="Me"[^}]*result="ok"[^}]*\} 1/);
    expect(text).toContain('component="up"');
    expect(text).toContain('mariner_process_resident_memory_bytes');
    expect(text).toContain('mariner_http_requests_in_flight');
  });

  it('is for this machine only', () => {
    const from = (remoteAddress: string) => ({ socket: { remoteAddress } }) as unknown as IncomingMessage;
    expect(fromLoopback(from('127.0.0.1'))).toBe(true);
    expect(fromLoopback(from('::1'))).toBe(true);
    expect(fromLoopback(from('::ffff:127.0.0.1'))).toBe(true);
    expect(fromLoopback(from('10.0.0.7'))).toBe(false);
    expect(fromLoopback(from('::ffff:192.168.1.2'))).toBe(false);
  });
});
