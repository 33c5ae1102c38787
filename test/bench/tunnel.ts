/**
 * Agent tunnel benchmark (`npm run bench:tunnel`, options after `--`; `npm run bench` runs it too).
 *
 * The control plane reaches a cluster's agent over the tunnel the agent dialled (lib/tunnel.ts): an
 * HTTP/1.1 Upgrade to a raw byte stream, or a WebSocket, carrying HTTP/2 with the control plane as the
 * client. This measures a request through `TunnelRegistry.request` against the same request to a plain
 * node:http server on loopback (keep-alive HTTP/1.1): the "direct loopback HTTP call" baseline.
 *
 * Three paths, side by side in one run, in alternating blocks (the first path rotating each round):
 *   - direct:    node:http server on 127.0.0.1, keep-alive http.Agent;
 *   - upgrade:   the tunnel of an agent dialled with transport 'upgrade';
 *   - websocket: the tunnel of a second agent (its own cluster) dialled with transport 'websocket'.
 * Three phases:
 *   - latency:    `GET /mariner/v1/healthz` (the agent's own route; the direct server answers the same
 *                 JSON bytes), one request in flight: p50/p99;
 *   - throughput: the same request, --concurrency in flight (50): requests/s over the blocks' wall time;
 *   - bulk:       --bulk-mib (64) MiB streamed agent → control plane: MiB/s. The agent has no bulk
 *                 route of its own, so the agents run a bench executor (below) whose Kubernetes API
 *                 handler streams N bytes for `/k8s/bulk?bytes=N`; the agent code is unchanged.
 * Every response is checked (status, exact body; bulk: content-length, byte count and content); a
 * failure, or a path that makes no progress for --stall-s seconds, aborts the run. Writes
 * bench-results/tunnel.{json,md}.
 *
 *   --requests N             latency phase: measured requests per path (default 5000)
 *   --throughput-requests N  throughput phase: measured requests per path (default 20000)
 *   --concurrency C          throughput phase: requests in flight per path (default 50)
 *   --warmup W               warm-up requests per path before each of the two phases (default 200)
 *   --block B                latency blocks of B requests; throughput blocks are 10 × B (default 100)
 *   --bulk-mib M             bulk transfer size (default 64; 0 skips the bulk phase)
 *   --bulk-rounds R          bulk transfers per path (default 5; the median is reported)
 *   --stall-s S              abort when a path makes no progress for S seconds (default 20)
 *   --embedded               PGlite instead of a fresh PostgreSQL database
 *
 * The client, the control plane, both agents and the direct server share one Node process and one
 * event loop: a tunnel request costs the HTTP/2 client, the tunnel transport both ways and the
 * agent's HTTP/2 server, all on the same core as the client's own work. Figures are for this setup.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { ClientHttp2Stream, Http2ServerRequest, Http2ServerResponse, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { startAgent, type Agent, type Executor } from '../../agent/index.js';
import type { TunnelTransportKind } from '../../agent/tunnelClient.js';
import { silentLogger } from '../../lib/logging.js';
import { agentRoutes } from '../../lib/agentContract.js';
import type { TunnelRegistry } from '../../subgraphs/sessions/index.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { BenchAbort, benchEnvironment, intOption, latencyStats, type LatencyStats, parseBenchArgs, runBench } from './support.js';

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');
const MiB = 1024 * 1024;
const HEALTHZ_PATH = agentRoutes.healthz();
const BULK_PATH = '/bulk';
/** The bulk body: 1 MiB of random bytes, repeated; written in 1 MiB chunks by both servers. */
const PATTERN = randomBytes(MiB);
/** Closing takes a second or two; longer means something hangs, which the report must say. */
const CLOSE_TIMEOUT_MS = 20_000;

type PathName = 'direct' | 'upgrade' | 'websocket';
type TunnelName = Exclude<PathName, 'direct'>;
const PATHS: PathName[] = ['direct', 'upgrade', 'websocket'];
const TUNNELS: TunnelName[] = ['upgrade', 'websocket'];
const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct loopback HTTP/1.1',
  upgrade: 'tunnel (HTTP/1.1 Upgrade)',
  websocket: 'tunnel (WebSocket)',
};

interface Options {
  requests: number;
  throughputRequests: number;
  concurrency: number;
  warmup: number;
  block: number;
  bulkMiB: number;
  bulkRounds: number;
  stallSeconds: number;
  embedded: boolean;
}

const CLI_OPTIONS = {
  requests: { type: 'string', default: '5000' },
  'throughput-requests': { type: 'string', default: '20000' },
  concurrency: { type: 'string', default: '50' },
  warmup: { type: 'string', default: '200' },
  block: { type: 'string', default: '100' },
  'bulk-mib': { type: 'string', default: '64' },
  'bulk-rounds': { type: 'string', default: '5' },
  'stall-s': { type: 'string', default: '20' },
  embedded: { type: 'boolean', default: false },
} as const;

function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(
    argv,
    CLI_OPTIONS,
    '--requests N --throughput-requests N --concurrency C --warmup W --block B --bulk-mib M --bulk-rounds R --stall-s S --embedded',
  );
  return {
    requests: intOption('requests', values.requests, 1),
    throughputRequests: intOption('throughput-requests', values['throughput-requests'], 1),
    concurrency: intOption('concurrency', values.concurrency, 1),
    warmup: intOption('warmup', values.warmup, 0),
    block: intOption('block', values.block, 1),
    bulkMiB: intOption('bulk-mib', values['bulk-mib'], 0),
    bulkRounds: intOption('bulk-rounds', values['bulk-rounds'], 1),
    stallSeconds: intOption('stall-s', values['stall-s'], 1),
    embedded: values.embedded,
  };
}

// ---------------------------------------------------------------------------------------------
// The servers: the direct baseline and the agents' bench executor stream bulk bytes the same way.

/** Writes `bytes` of PATTERN in 1 MiB chunks, waiting for 'drain' when write() says so. */
function streamBulk(res: Writable, bytes: number): void {
  let sent = 0;
  let closed = false;
  res.once('close', () => (closed = true));
  const pump = () => {
    while (sent < bytes && !closed) {
      const n = Math.min(PATTERN.length, bytes - sent);
      sent += n;
      if (!res.write(n === PATTERN.length ? PATTERN : PATTERN.subarray(0, n))) return void res.once('drain', pump);
    }
    if (!closed) res.end();
  };
  pump();
}

function bulkBytesOf(requestPath: string): number | null {
  const url = new URL(requestPath, 'http://bench');
  const bytes = Number(url.searchParams.get('bytes'));
  return url.pathname === BULK_PATH && Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : null;
}

/**
 * An executor for the agents of this benchmark: no cluster behind it, a Kubernetes API handler that
 * serves only `GET /bulk?bytes=N` (reached over the tunnel as `/k8s/bulk?bytes=N`). Its kind says
 * 'local' (the Executor type knows no other without Kubernetes); the agent routes /k8s by `kubeApi`.
 */
function createBenchExecutor(): Executor {
  return {
    kind: 'local',
    runtimes: null,
    jobs: null,
    kubeApi: {
      handle(_req: Http2ServerRequest, res: Http2ServerResponse, kubePath: string) {
        const bytes = bulkBytesOf(kubePath);
        if (bytes === null) {
          res.writeHead(404, { 'content-type': 'text/plain' });
          return void res.end(`the bench executor serves only ${BULK_PATH}?bytes=N`);
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
        streamBulk(res, bytes);
      },
      handleUpgrade(stream: ServerHttp2Stream, _headers: IncomingHttpHeaders, _path: string) {
        stream.respond({ ':status': 501 }, { endStream: true });
      },
    },
    async clusterStatus() {
      return { nodes: [], gpuCapacity: 0, gpuAllocated: 0, gpuPods: [], provisionableResources: [] };
    },
    async applyConfig() {},
    async close() {},
  };
}

/** The direct baseline: answers HEALTHZ_PATH with `healthzBody` and BULK_PATH as the bench executor does. */
async function startDirectServer(healthzBody: () => string): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const requestPath = req.url ?? '/';
    if (requestPath === HEALTHZ_PATH) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(healthzBody());
    }
    const bytes = bulkBytesOf(requestPath);
    if (bytes === null) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('not found');
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
    streamBulk(res, bytes);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}

// ---------------------------------------------------------------------------------------------
// The clients. A reply is read to its end; `received` counts body bytes as they arrive (progress).

interface Reply {
  status: number;
  contentLength: number | null;
  /** The body as text (small requests) or its byte count, after checking it against PATTERN (bulk). */
  text: string;
  bytes: number;
  /** process.hrtime.bigint() when the last body byte arrived. */
  endedAt: bigint;
}

/** Collects a body, or (bulk) checks each chunk against PATTERN at its offset and only counts it. */
function bodyReader(bulk: boolean, onBytes: (n: number) => void) {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let mismatchAt: number | null = null;
  return {
    push(chunk: Buffer) {
      if (bulk) {
        if (mismatchAt === null) {
          let done = 0;
          while (done < chunk.length) {
            const at = (bytes + done) % PATTERN.length;
            const n = Math.min(chunk.length - done, PATTERN.length - at);
            if (!chunk.subarray(done, done + n).equals(PATTERN.subarray(at, at + n))) {
              mismatchAt = bytes + done;
              break;
            }
            done += n;
          }
        }
      } else chunks.push(chunk);
      bytes += chunk.length;
      onBytes(chunk.length);
    },
    finish(status: number, contentLength: number | null): Reply {
      if (mismatchAt !== null) throw new BenchAbort(`bulk body differs from what the server sent, from byte ${mismatchAt}`);
      return { status, contentLength, text: bulk ? '' : Buffer.concat(chunks).toString('utf8'), bytes, endedAt: process.hrtime.bigint() };
    },
  };
}

function directGet(agent: http.Agent, port: number, requestPath: string, bulk: boolean, onBytes: (n: number) => void): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ agent, host: '127.0.0.1', port, path: requestPath }, (res) => {
      const reader = bodyReader(bulk, onBytes);
      const length = res.headers['content-length'];
      res.on('data', (chunk: Buffer) => reader.push(chunk));
      res.once('end', () => {
        try {
          resolve(reader.finish(res.statusCode ?? 0, length === undefined ? null : Number(length)));
        } catch (error) {
          reject(error);
        }
      });
      res.once('error', reject);
    });
    req.once('error', reject);
  });
}

/**
 * One request over a tunnel. It settles when the stream has closed (so the registry's count of
 * active streams is already down again), with the time of the last body byte; a stream that closes
 * without ending its body (RST_STREAM, a dead tunnel) is an error.
 */
function tunnelGet(registry: TunnelRegistry, clusterId: string, requestPath: string, bulk: boolean, onBytes: (n: number) => void): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream;
    try {
      stream = registry.request(clusterId, { ':method': 'GET', ':path': requestPath }, { endStream: true });
    } catch (error) {
      return reject(error);
    }
    const reader = bodyReader(bulk, onBytes);
    let status = 0;
    let contentLength: number | null = null;
    let reply: Reply | undefined;
    let failure: unknown;
    stream.once('response', (headers) => {
      status = Number(headers[':status']);
      const length = headers['content-length'];
      if (length !== undefined) contentLength = Number(length);
    });
    stream.on('data', (chunk: Buffer) => reader.push(chunk));
    stream.once('end', () => {
      try {
        reply = reader.finish(status, contentLength);
      } catch (error) {
        failure = error;
      }
    });
    stream.once('error', (error) => (failure ??= error));
    stream.once('close', () => {
      if (reply && failure === undefined) return resolve(reply);
      reject(failure ?? new BenchAbort(`the tunnel stream closed before its body ended (rstCode ${stream.rstCode})`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Statistics (as in gatewayOverhead.ts: nearest-rank percentiles, in ms)

interface BulkStats {
  bytes: number;
  /** MiB/s of each transfer, in the order they ran. */
  rounds: number[];
  median: number;
  min: number;
  max: number;
}

function bulkStats(bytes: number, secondsPerRound: number[]): BulkStats {
  const rates = secondsPerRound.map((s) => Math.round((bytes / MiB / s) * 10) / 10);
  const sorted = [...rates].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : Math.round(((sorted[mid - 1]! + sorted[mid]!) / 2) * 10) / 10;
  return { bytes, rounds: rates, median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

// ---------------------------------------------------------------------------------------------

/** Settles with `work`, or rejects with BenchAbort when `progress()` stays the same for `stallMs`. */
async function watched<T>(work: Promise<T>, progress: () => number, stallMs: number, describe: () => string): Promise<T> {
  let last = progress();
  let lastChange = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setInterval(
      () => {
        const now = progress();
        if (now !== last) {
          last = now;
          lastChange = Date.now();
        } else if (Date.now() - lastChange >= stallMs) {
          reject(new BenchAbort(`stalled: no progress for ${Math.round(stallMs / 1000)} s (${describe()})`));
        }
      },
      Math.min(1000, stallMs),
    );
  });
  try {
    return await Promise.race([work, stalled]);
  } finally {
    clearInterval(timer);
  }
}

function withTimeout(work: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new BenchAbort(`${what} did not finish within ${ms / 1000} s`)), ms))),
  ]);
}

interface BenchTunnel {
  name: TunnelName;
  transport: TunnelTransportKind;
  clusterId: string;
  agent: Agent;
  /** The healthz body this agent answers (agentId, clusterId, executor). */
  healthz: string;
}

const REGISTER = 'mutation Register($name: String!) { registerCluster(input: { name: $name }) { registrationKey cluster { id } } }';

/** Resolves when the registry has a live tunnel for the cluster (the agent may see its side first). */
function tunnelAttached(registry: TunnelRegistry, clusterId: string): Promise<void> {
  if (registry.tunnels(clusterId).length > 0) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = registry.onChange((changed) => {
      if (changed === clusterId && registry.tunnels(clusterId).length > 0) {
        stop();
        resolve();
      }
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:tunnel${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);

  log(`starting the platform (${options.embedded ? 'PGlite' : 'PostgreSQL'}), two agents and the direct server…`);
  let t: TestPlatform | undefined;
  const agents: Agent[] = [];
  let direct: { server: http.Server; port: number } | undefined;
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency, maxFreeSockets: options.concurrency });
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= withTimeout(
      (async () => {
        httpAgent.destroy();
        direct?.server.closeAllConnections();
        direct?.server.close();
        await Promise.all(agents.map((a) => a.close()));
        await t?.close();
      })(),
      CLOSE_TIMEOUT_MS,
      'closing the agents and the platform',
    ));
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: closing the agents and the platform…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    t = await startTestPlatform({ embedded: options.embedded });
    const registry = t.platform.sessions.registry;
    const platform = t;

    // One cluster and one agent per transport, both connected for the whole run.
    const tunnels = {} as Record<TunnelName, BenchTunnel>;
    for (const name of TUNNELS) {
      const transport: TunnelTransportKind = name;
      const { registerCluster } = await platform.gqlOk<{ registerCluster: { registrationKey: string; cluster: { id: string } } }>(REGISTER, {
        name: `bench-${name}`,
      });
      const clusterId = registerCluster.cluster.id;
      const agent = await startAgent({
        controlPlaneUrl: platform.url,
        registrationKey: registerCluster.registrationKey,
        executor: createBenchExecutor(),
        transport,
        logger: silentLogger(),
        // One status report at start, then none during the run (the default 30 s would land in the middle).
        statusIntervalMs: 3_600_000,
      });
      agents.push(agent);
      await agent.whenConnected();
      await tunnelAttached(registry, clusterId);
      const [info, ...more] = registry.tunnels(clusterId);
      const expected = transport === 'upgrade' ? 'UPGRADE' : 'WEBSOCKET';
      if (!info || more.length > 0 || info.transport !== expected || info.agentId !== agent.agentId) {
        throw new BenchAbort(
          `cluster ${clusterId}: expected one ${expected} tunnel of agent ${agent.agentId}, the registry has ${JSON.stringify(registry.tunnels(clusterId))}`,
        );
      }
      tunnels[name] = { name, transport, clusterId, agent, healthz: '' };
    }
    const connectedAt = Object.fromEntries(TUNNELS.map((n) => [n, registry.tunnels(tunnels[n].clusterId)[0]!.connectedAt.getTime()]));

    // Bytes and requests in flight, for the stall watchdog and the final leak check.
    const progress: Record<PathName, number> = { direct: 0, upgrade: 0, websocket: 0 };
    let openTunnelStreams = 0;
    let streamsClosed: (() => void) | undefined;
    const get = async (name: PathName, requestPath: string, bulk: boolean): Promise<Reply> => {
      const onBytes = (n: number) => (progress[name] += n);
      if (name === 'direct') return directGet(httpAgent, direct!.port, requestPath, bulk, onBytes);
      openTunnelStreams++;
      try {
        return await tunnelGet(registry, tunnels[name].clusterId, requestPath, bulk, onBytes);
      } finally {
        if (--openTunnelStreams === 0) streamsClosed?.();
      }
    };

    // The agents' healthz answers; the direct server answers the upgrade agent's bytes (same size).
    for (const name of TUNNELS) {
      const reply = await get(name, HEALTHZ_PATH, false);
      const { agent, clusterId } = tunnels[name];
      let body: unknown;
      try {
        body = JSON.parse(reply.text);
      } catch {
        throw new BenchAbort(`${name}: healthz answered non-JSON (HTTP ${reply.status}): ${reply.text.slice(0, 300)}`);
      }
      const wanted = { agentId: agent.agentId, clusterId, executor: 'local' };
      if (reply.status !== 200 || JSON.stringify(body) !== JSON.stringify(wanted)) {
        throw new BenchAbort(`${name}: healthz answered HTTP ${reply.status} ${reply.text.slice(0, 300)}, expected ${JSON.stringify(wanted)}`);
      }
      tunnels[name].healthz = reply.text;
    }
    direct = await startDirectServer(() => tunnels.upgrade.healthz);
    const expectedBody: Record<PathName, string> = { direct: tunnels.upgrade.healthz, upgrade: tunnels.upgrade.healthz, websocket: tunnels.websocket.healthz };

    const check = (name: PathName, reply: Reply, bulkBytes: number | null) => {
      if (reply.status !== 200) throw new BenchAbort(`${name}: HTTP ${reply.status} ${reply.text.slice(0, 300)}`);
      if (bulkBytes === null) {
        if (reply.text !== expectedBody[name])
          throw new BenchAbort(`${name}: healthz body ${JSON.stringify(reply.text.slice(0, 300))}, expected ${expectedBody[name]}`);
      } else if (reply.contentLength !== bulkBytes || reply.bytes !== bulkBytes) {
        throw new BenchAbort(`${name}: bulk of ${bulkBytes} bytes came with content-length ${reply.contentLength} and ${reply.bytes} bytes`);
      }
    };

    const stallMs = options.stallSeconds * 1000;
    const describeInFlight = (name: PathName) => () =>
      name === 'direct'
        ? `${PATH_LABELS[name]}`
        : `${PATH_LABELS[name]}, registry: ${JSON.stringify(registry.tunnels(tunnels[name].clusterId).map((i) => ({ activeStreams: i.activeStreams, lastHeartbeatAt: i.lastHeartbeatAt })))}`;

    type Phase = 'latency' | 'throughput';
    const samples: Record<Phase, Record<PathName, bigint[]>> = {
      latency: { direct: [], upgrade: [], websocket: [] },
      throughput: { direct: [], upgrade: [], websocket: [] },
    };
    const wall: Record<Phase, Record<PathName, bigint>> = {
      latency: { direct: 0n, upgrade: 0n, websocket: 0n },
      throughput: { direct: 0n, upgrade: 0n, websocket: 0n },
    };

    /** `count` healthz requests on one path, `concurrency` in flight; recorded under `phase` unless null. */
    async function runBlock(name: PathName, count: number, concurrency: number, phase: Phase | null): Promise<void> {
      let next = 0;
      const worker = async () => {
        while (next < count) {
          next++;
          const start = process.hrtime.bigint();
          const reply = await get(name, HEALTHZ_PATH, false);
          check(name, reply, null);
          if (phase) samples[phase][name].push(reply.endedAt - start);
        }
      };
      const started = process.hrtime.bigint();
      await watched(Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker)), () => progress[name], stallMs, describeInFlight(name));
      if (phase) wall[phase][name] += process.hrtime.bigint() - started;
    }

    /** Blocks of every path in turn, rotating which goes first each round. */
    async function interleaved(perPath: number, block: number, concurrency: number, phase: Phase | null): Promise<void> {
      const rounds = Math.ceil(perPath / block);
      const done: Record<PathName, number> = { direct: 0, upgrade: 0, websocket: 0 };
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < PATHS.length; i++) {
          const name = PATHS[(round + i) % PATHS.length]!;
          const due = Math.round((perPath * (round + 1)) / rounds);
          if (due > done[name]) await runBlock(name, due - done[name], concurrency, phase);
          done[name] = Math.max(done[name], due);
        }
      }
    }

    const benchStarted = process.hrtime.bigint();
    log(`latency: ${options.warmup} warm-up + ${options.requests} requests per path, one in flight, blocks of ${options.block}…`);
    if (options.warmup > 0) await interleaved(options.warmup, options.block, 1, null);
    await interleaved(options.requests, options.block, 1, 'latency');

    const throughputBlock = options.block * 10;
    log(
      `throughput: ${options.warmup} warm-up + ${options.throughputRequests} requests per path, ${options.concurrency} in flight, blocks of ${throughputBlock}…`,
    );
    if (options.warmup > 0) await interleaved(options.warmup, throughputBlock, options.concurrency, null);
    await interleaved(options.throughputRequests, throughputBlock, options.concurrency, 'throughput');

    const bulkBytes = options.bulkMiB * MiB;
    const bulkSeconds: Record<PathName, number[]> = { direct: [], upgrade: [], websocket: [] };
    if (bulkBytes > 0) {
      log(`bulk: ${options.bulkMiB} MiB agent → control plane, ${options.bulkRounds} transfer(s) per path after one warm-up transfer…`);
      const transfer = async (name: PathName, bytes: number) => {
        const requestPath = name === 'direct' ? `${BULK_PATH}?bytes=${bytes}` : agentRoutes.kubernetes(`${BULK_PATH}?bytes=${bytes}`);
        const start = process.hrtime.bigint();
        const reply = await watched(get(name, requestPath, true), () => progress[name], stallMs, describeInFlight(name));
        check(name, reply, bytes);
        return Number(reply.endedAt - start) / 1e9;
      };
      for (const name of PATHS) await transfer(name, Math.min(bulkBytes, 16 * MiB));
      for (let round = 0; round < options.bulkRounds; round++) {
        for (let i = 0; i < PATHS.length; i++) {
          const name = PATHS[(round + i) % PATHS.length]!;
          bulkSeconds[name].push(await transfer(name, bulkBytes));
        }
      }
    }
    const durationSeconds = Math.round(Number(process.hrtime.bigint() - benchStarted) / 1e7) / 100;

    // Every stream closed, none left counted as active, and no tunnel redialled during the run.
    if (openTunnelStreams > 0)
      await watched(
        new Promise<void>((resolve) => (streamsClosed = resolve)),
        () => openTunnelStreams,
        stallMs,
        () => `${openTunnelStreams} tunnel streams not closed`,
      );
    for (const name of TUNNELS) {
      const infos = registry.tunnels(tunnels[name].clusterId);
      if (infos.length !== 1 || infos[0]!.agentId !== tunnels[name].agent.agentId || infos[0]!.connectedAt.getTime() !== connectedAt[name]) {
        throw new BenchAbort(`${name}: the tunnel was replaced during the run (a drop and a redial): ${JSON.stringify(infos)}`);
      }
      if (infos[0]!.activeStreams !== 0)
        throw new BenchAbort(`${name}: the registry still counts ${infos[0]!.activeStreams} active streams after every stream closed`);
    }

    const latency = Object.fromEntries(PATHS.map((n) => [n, latencyStats(samples.latency[n], wall.latency[n])])) as Record<PathName, LatencyStats>;
    const throughput = Object.fromEntries(PATHS.map((n) => [n, latencyStats(samples.throughput[n], wall.throughput[n])])) as Record<PathName, LatencyStats>;
    const bulk = bulkBytes > 0 ? (Object.fromEntries(PATHS.map((n) => [n, bulkStats(bulkBytes, bulkSeconds[n])])) as Record<PathName, BulkStats>) : null;
    const r2 = (x: number) => Math.round(x * 100) / 100;
    const ratios = Object.fromEntries(
      TUNNELS.map((n) => [
        n,
        {
          p50: r2(latency[n].p50 / latency.direct.p50),
          p99: r2(latency[n].p99 / latency.direct.p99),
          requestsPerSecond: r2(throughput[n].requestsPerSecond / throughput.direct.requestsPerSecond),
          mibPerSecond: bulk ? r2(bulk[n].median / bulk.direct.median) : null,
          addedP50Ms: Math.round((latency[n].p50 - latency.direct.p50) * 1000) / 1000,
          addedP99Ms: Math.round((latency[n].p99 - latency.direct.p99) * 1000) / 1000,
        },
      ]),
    ) as Record<TunnelName, { p50: number; p99: number; requestsPerSecond: number; mibPerSecond: number | null; addedP50Ms: number; addedP99Ms: number }>;

    const report = {
      ...benchEnvironment('tunnel', command),
      database: options.embedded ? 'pglite' : 'postgresql',
      paths: PATH_LABELS,
      request: `GET ${HEALTHZ_PATH} (${Buffer.byteLength(expectedBody.direct)}-byte JSON answer)`,
      latency: { description: 'one request in flight, ms', requests: options.requests, warmup: options.warmup, blockSize: options.block, ...latency },
      throughput: {
        description: `${options.concurrency} requests in flight per path, ms and requests/s over the blocks' wall time`,
        requests: options.throughputRequests,
        concurrency: options.concurrency,
        warmup: options.warmup,
        blockSize: throughputBlock,
        ...throughput,
      },
      bulk: bulk ? { description: `GET of ${options.bulkMiB} MiB, server → client, MiB/s per transfer (time to the last byte)`, ...bulk } : null,
      ratios: {
        description: 'tunnel / direct (latency: p50 and p99 at one in flight; requests/s at --concurrency; bulk MiB/s medians); added = tunnel − direct, ms',
        ...ratios,
      },
      durationSeconds,
    };

    const rows = PATHS.map((n) => [
      PATH_LABELS[n],
      latency[n].p50.toFixed(3),
      latency[n].p99.toFixed(3),
      throughput[n].requestsPerSecond.toFixed(0),
      throughput[n].p99.toFixed(2),
      bulk ? bulk[n].median.toFixed(0) : '-',
    ]);
    const header = ['path', 'p50 ms', 'p99 ms', `req/s @${options.concurrency}`, `p99 ms @${options.concurrency}`, 'bulk MiB/s'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    const table = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
    const summaries = TUNNELS.map((n) => {
      const r = ratios[n];
      return (
        `${PATH_LABELS[n]} / direct: p50 ×${r.p50.toFixed(2)} (+${(r.addedP50Ms * 1000).toFixed(0)} µs), p99 ×${r.p99.toFixed(2)}, ` +
        `req/s ×${r.requestsPerSecond.toFixed(2)}${r.mibPerSecond === null ? '' : `, MiB/s ×${r.mibPerSecond.toFixed(2)}`}`
      );
    });

    const markdown = [
      '# Agent tunnel',
      '',
      `Produced by \`${command}\` on ${report.date}.`,
      '',
      `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}; database ${report.database}`,
      `- Request: ${report.request}; latency: ${options.requests} per path after ${options.warmup} warm-up, one in flight, blocks of ${options.block}; ` +
        `throughput: ${options.throughputRequests} per path, ${options.concurrency} in flight, blocks of ${throughputBlock}` +
        (bulk ? `; bulk: ${options.bulkMiB} MiB × ${options.bulkRounds} per path (median)` : ''),
      `- Everything runs in one Node process (client, control plane, both agents, direct server); total ${durationSeconds} s`,
      '',
      `| path | p50 ms | p99 ms | req/s @${options.concurrency} | p99 ms @${options.concurrency} | bulk MiB/s |`,
      '|---|---:|---:|---:|---:|---:|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      ...summaries.map((s) => `- **${s}**`),
      '',
    ].join('\n');

    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, 'tunnel.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(path.join(RESULTS_DIR, 'tunnel.md'), markdown);

    console.log(`\n${table}\n\n${summaries.join('\n')}\n`);
    log(`wrote ${path.relative(process.cwd(), RESULTS_DIR)}/tunnel.{json,md} (${durationSeconds} s)`);
  } finally {
    await cleanUp();
  }
}

runBench(main);
