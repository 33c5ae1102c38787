import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClusterAccessDirectory, type ClusterAccess } from './clusterAccess.js';
import { InternalTokens } from './identity.js';

const tokens = new InternalTokens('a-secret-of-at-least-thirty-two-characters', 60);

/**
 * A stand-in clusters subgraph on loopback: answers `clusterAccess` with `clusters` as they are when
 * asked; while `held` is set, answers wait for it to be released; while `failing`, it answers 500.
 */
let server: Server;
let url: string;
let clusters: ClusterAccess[];
let asked: number;
let failing: boolean;
let held: { promise: Promise<void>; release: () => void } | null;
const answered: (() => void)[] = [];
const questions: (() => void)[] = [];

beforeAll(async () => {
  server = createServer(async (req, res) => {
    for await (const _chunk of req);
    asked++;
    questions.splice(0).forEach((notify) => notify());
    const snapshot = structuredClone(clusters);
    const fail = failing;
    if (held) await held.promise;
    if (fail) {
      res.statusCode = 500;
      res.end('down');
    } else {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ data: { clusterAccess: snapshot } }));
    }
    res.once('finish', () => answered.splice(0).forEach((notify) => notify()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

/** Resolves once the stand-in has sent its next answer (and the client had a turn to read it). */
const nextAnswer = () => new Promise<void>((resolve) => answered.push(() => setTimeout(resolve, 20)));

/** Resolves once the stand-in is asked its next question. */
const nextQuestion = () => new Promise<void>((resolve) => questions.push(resolve));

const hold = () => {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => (release = resolve));
  held = { promise, release };
  return () => {
    held = null;
    release();
  };
};

const platform = (clusterId: string, organizationIds: string[]): ClusterAccess => ({
  clusterId,
  organizationId: null,
  sharedWithAllOrganizations: false,
  organizationIds,
});

beforeEach(() => {
  clusters = [
    platform('cluster-shared', ['org-a', 'org-b']),
    { clusterId: 'cluster-b', organizationId: 'org-b', sharedWithAllOrganizations: false, organizationIds: [] },
  ];
  asked = 0;
  failing = false;
  held = null;
  // Only the clock is faked: the stand-in and the client still talk over real sockets.
  vi.useFakeTimers({ toFake: ['Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

const directory = (ttlMs?: number) => new ClusterAccessDirectory({ clustersUrl: () => url, tokens, ...(ttlMs !== undefined ? { ttlMs } : {}) });

describe('ClusterAccessDirectory: whom clusters serve, cached for routing', () => {
  it("computes an organization's usable clusters once per answer: every request gets the same set, and one question is asked", async () => {
    const access = directory();
    const first = await access.usableBy('tenant', 'org-a');
    expect([...first]).toEqual(['cluster-shared']);
    expect([...(await access.usableBy('tenant', 'org-b'))].sort()).toEqual(['cluster-b', 'cluster-shared']);
    for (let i = 0; i < 100; i++) expect(await access.usableBy('tenant', 'org-a')).toBe(first);
    expect(asked).toBe(1);
  });

  it('refreshes in the background past half the lifetime: requests are answered at once, and a revoked grant is gone within the lifetime', async () => {
    const access = directory(5_000);
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual(['cluster-shared']);
    // A platform admin revokes org A's grant.
    clusters = [platform('cluster-shared', ['org-b'])];
    vi.advanceTimersByTime(2_600);
    // The refresh is held: the request is answered from what is kept, without waiting for it.
    const release = hold();
    const refreshing = nextQuestion();
    const answeredMeanwhile = await access.usableBy('tenant', 'org-a');
    expect([...answeredMeanwhile]).toEqual(['cluster-shared']);
    await refreshing;
    expect(asked).toBe(2);
    // One refresh at a time, however many requests come meanwhile.
    for (let i = 0; i < 10; i++) await access.usableBy('tenant', 'org-a');
    expect(asked).toBe(2);
    const refreshed = nextAnswer();
    release();
    await refreshed;
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual([]);
    expect(asked).toBe(2);
  });

  it('a cluster a caller knows of (its runtime reported) but the answer lacks is asked about at once, at most every 500 ms', async () => {
    const access = directory(5_000);
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual(['cluster-shared']);
    // A cluster registered since: its runtime's report names it.
    clusters = [...clusters, platform('cluster-new', ['org-a'])];
    vi.advanceTimersByTime(600);
    expect([...(await access.usableBy('tenant', 'org-a', ['cluster-new']))].sort()).toEqual(['cluster-new', 'cluster-shared']);
    expect(asked).toBe(2);
    // A cluster that no longer exists (unregistered, its rows not yet gone) does not make every request ask.
    for (let i = 0; i < 10; i++) await access.usableBy('tenant', 'org-a', ['cluster-gone']);
    expect(asked).toBe(2);
    vi.advanceTimersByTime(600);
    await access.clusters('tenant', ['cluster-gone']);
    expect(asked).toBe(3);
  });

  it('never serves an answer past its lifetime: with no request in the refresh window, the next one waits for a fresh answer', async () => {
    const access = directory(5_000);
    await access.usableBy('tenant', 'org-a');
    clusters = [platform('cluster-shared', ['org-b'])];
    vi.advanceTimersByTime(5_001);
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual([]);
    expect(asked).toBe(2);
  });

  it('a failed refresh keeps the answer until it expires; then routing fails closed, until the clusters subgraph answers again', async () => {
    const access = directory(5_000);
    await access.usableBy('tenant', 'org-a');
    failing = true;
    vi.advanceTimersByTime(3_000);
    const failed = nextAnswer();
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual(['cluster-shared']);
    await failed;
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual(['cluster-shared']);
    vi.advanceTimersByTime(2_001);
    await expect(access.usableBy('tenant', 'org-a')).rejects.toThrow();
    await expect(access.clusters('tenant')).rejects.toThrow();
    failing = false;
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual(['cluster-shared']);
  });

  it('ttlMs 0 asks the clusters subgraph every time (job dispatch: a revoked grant counts at once)', async () => {
    const access = directory(0);
    await access.usableBy('tenant', 'org-a');
    clusters = [platform('cluster-shared', ['org-b'])];
    expect([...(await access.usableBy('tenant', 'org-a'))]).toEqual([]);
    expect((await access.clusters('tenant')).get('cluster-shared')?.organizationIds).toEqual(['org-b']);
    expect(asked).toBe(3);
  });
});
