/**
 * Gateway overhead benchmark (`npm run bench:gateway`, options after `--`; `npm run bench` runs it too).
 *
 * The same authenticated query, in alternating blocks, (a) straight to the users subgraph with an
 * internal token carrying the identity the gateway would build, and (b) through the gateway with the
 * admin API key; plus (c) a gateway query that touches both subgraphs (absolute figures only).
 * Reports p50/p90/p99/mean per path and the gateway/direct ratios, and writes
 * bench-results/gateway-overhead.{json,md}. Every response is checked; any error aborts the run.
 *
 *   --requests N       measured requests per path (default 2000)
 *   --federated N      measured requests of the users + rbac gateway query (default requests / 4, so
 *                      the default run stays near 40 s on 2 cores; 0 leaves that path out)
 *   --concurrency C    requests in flight per path (default 1)
 *   --warmup W         warm-up requests per path (default 200)
 *   --block B          requests per block before switching path (default 100)
 *   --embedded         PGlite instead of a fresh PostgreSQL database
 *   --mint-per-request mint the direct path's internal token inside the timed region of every request
 *                      (default: minted once, re-minted untimed before it expires)
 *
 * Everything (client, gateway, subgraphs, and PGlite when embedded) shares one Node process and one
 * event loop: figures are for this setup, not for a deployment with separate processes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { decodeJwt } from 'jose';
import { INTERNAL_TOKEN_HEADER, type Identity, type Principal } from '../../lib/identity.js';
import { resolveProject } from '../../schema/rbac/projectResolution.js';
import { DEFAULT_ROLE_SCOPES } from '../../schema/rbac/roleScopes.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { BY_API_KEY } from '../../gateway/authentication.js';
import { BenchAbort, benchEnvironment, intOption, latencyStats, type LatencyStats, parseBenchArgs, runBench } from './support.js';

const QUERY = '{ self { id organizationRoleBindings { role organization { id title } } } }';
const FEDERATED_QUERY = '{ self { id } roleScopes { role } }';
/** As gateway/authentication.ts asks for them (not exported there). */
/** Re-mint the direct path's token when it has less than this left. */
const REMINT_MARGIN_SECONDS = 20;

const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench-results');

type PathName = 'direct' | 'gateway' | 'gatewayFederated';
const PATH_LABELS: Record<PathName, string> = {
  direct: 'direct → users subgraph',
  gateway: 'gateway (users only)',
  gatewayFederated: 'gateway (users + rbac)',
};

interface Options {
  requests: number;
  federated: number;
  concurrency: number;
  warmup: number;
  block: number;
  embedded: boolean;
  mintPerRequest: boolean;
}

const CLI_OPTIONS = {
  requests: { type: 'string', default: '2000' },
  federated: { type: 'string' },
  concurrency: { type: 'string', default: '1' },
  warmup: { type: 'string', default: '200' },
  block: { type: 'string', default: '100' },
  embedded: { type: 'boolean', default: false },
  'mint-per-request': { type: 'boolean', default: false },
} as const;

function parseOptions(argv: string[]): Options {
  const values = parseBenchArgs(argv, CLI_OPTIONS, `--requests N --federated N --concurrency C --warmup W --block B --embedded --mint-per-request`);
  const requests = intOption('requests', values.requests, 1);
  return {
    requests,
    federated: values.federated === undefined ? Math.ceil(requests / 4) : intOption('federated', values.federated, 0),
    concurrency: intOption('concurrency', values.concurrency, 1),
    warmup: intOption('warmup', values.warmup, 0),
    block: intOption('block', values.block, 1),
    embedded: values.embedded,
    mintPerRequest: values['mint-per-request'],
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP: node:http with one keep-alive agent for every target, so both paths pay the same client cost.

interface Reply {
  status: number;
  text: string;
}

function createClient(concurrency: number) {
  // The gateway path opens sockets to the gateway only; the direct path to the subgraph only.
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  function post(url: URL, headers: Record<string, string>, body: Buffer): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json', 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
  return { post, close: () => agent.destroy() };
}

// ---------------------------------------------------------------------------------------------
// Statistics

// ---------------------------------------------------------------------------------------------

interface Target {
  name: PathName;
  url: URL;
  body: Buffer;
  /** Request headers; may mint (timed) when --mint-per-request. */
  headers(): Promise<Record<string, string>> | Record<string, string>;
  /** Throws BenchAbort unless the reply is a correct answer. */
  check(reply: Reply): void;
}

function parseReply(name: string, reply: Reply): { data?: any; errors?: { message: string; extensions?: unknown }[] } {
  let body: { data?: any; errors?: { message: string; extensions?: unknown }[] };
  try {
    body = JSON.parse(reply.text);
  } catch {
    throw new BenchAbort(`${name}: non-JSON response (HTTP ${reply.status}): ${reply.text.slice(0, 300)}`);
  }
  if (reply.status !== 200 || body.errors?.length || !body.data) {
    throw new BenchAbort(
      `${name}: the response has errors (HTTP ${reply.status}): ${JSON.stringify(body.errors ?? body).slice(0, 500)}` +
        '\nA benchmark of error responses is worthless: fix the platform (or the bench) first.',
    );
  }
  return body;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const command = `npm run bench:gateway${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const log = (line: string) => process.stderr.write(`${line}\n`);

  log(`starting the platform (${options.embedded ? 'PGlite' : 'PostgreSQL'})…`);
  let t: TestPlatform | undefined;
  let client: ReturnType<typeof createClient> | undefined;
  let closing: Promise<void> | undefined;
  const cleanUp = () =>
    (closing ??= (async () => {
      client?.close();
      await t?.close();
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: closing the platform…`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    t = await startTestPlatform({ embedded: options.embedded });
    const { platform, adminKey } = t;
    client = createClient(options.concurrency);
    const { post } = client;
    const gatewayUrl = new URL(t.graphqlUrl);
    const usersUrl = new URL(platform.subgraphUrls.users);

    // The identity the gateway builds for the admin key (gateway/authentication.ts).
    const systemToken = await platform.tokens.mint('users', 'bench', null, true);
    const lookup = await post(
      usersUrl,
      { [INTERNAL_TOKEN_HEADER]: systemToken },
      Buffer.from(JSON.stringify({ query: BY_API_KEY, variables: { secret: adminKey } })),
    );
    const principal = parseReply('principal lookup', lookup).data.principal as Principal | null;
    if (!principal) throw new BenchAbort('principalByApiKey found no principal for the admin key');
    const resolution = resolveProject(principal, {}, DEFAULT_ROLE_SCOPES);
    const identity: Identity = resolution.ok ? { principal, project: resolution.context } : { principal, project: null, projectRefusal: resolution.reason };

    let userToken = await platform.tokens.mint('users', 'bench', identity);
    let userTokenExp = decodeJwt(userToken).exp ?? 0;
    const ttlSeconds = userTokenExp - (decodeJwt(userToken).iat ?? 0);
    let remints = 0;
    const refreshUserToken = async () => {
      if (userTokenExp - Date.now() / 1000 > REMINT_MARGIN_SECONDS) return;
      userToken = await platform.tokens.mint('users', 'bench', identity);
      userTokenExp = decodeJwt(userToken).exp ?? 0;
      remints++;
    };

    const expectedId = principal.userId;
    const checkSelf = (name: PathName, reply: Reply) => {
      const body = parseReply(name, reply);
      if (body.data.self?.id !== expectedId) {
        throw new BenchAbort(`${name}: self.id is ${JSON.stringify(body.data.self?.id)}, expected ${JSON.stringify(expectedId)}`);
      }
      return body;
    };
    const queryBody = Buffer.from(JSON.stringify({ query: QUERY }));
    const targets: Record<PathName, Target> = {
      direct: {
        name: 'direct',
        url: usersUrl,
        body: queryBody,
        headers: options.mintPerRequest
          ? async () => ({ [INTERNAL_TOKEN_HEADER]: await platform.tokens.mint('users', 'bench', identity) })
          : () => ({ [INTERNAL_TOKEN_HEADER]: userToken }),
        check: (reply) => void checkSelf('direct', reply),
      },
      gateway: {
        name: 'gateway',
        url: gatewayUrl,
        body: queryBody,
        headers: () => ({ authorization: `Bearer ${adminKey}` }),
        check: (reply) => void checkSelf('gateway', reply),
      },
      gatewayFederated: {
        name: 'gatewayFederated',
        url: gatewayUrl,
        body: Buffer.from(JSON.stringify({ query: FEDERATED_QUERY })),
        headers: () => ({ authorization: `Bearer ${adminKey}` }),
        check: (reply) => {
          const body = checkSelf('gatewayFederated', reply);
          if (!Array.isArray(body.data.roleScopes) || body.data.roleScopes.length === 0) {
            throw new BenchAbort(`gatewayFederated: roleScopes is empty: ${reply.text.slice(0, 300)}`);
          }
        },
      },
    };

    // Both paths must give the same answer before their timings can be compared.
    const send = async (target: Target) => {
      const reply = await post(target.url, await target.headers(), target.body);
      target.check(reply);
      return parseReply(target.name, reply);
    };
    const direct = await send(targets.direct);
    const viaGateway = await send(targets.gateway);
    if (!isDeepStrictEqual(direct.data, viaGateway.data)) {
      throw new BenchAbort(`direct and gateway answers differ:\n  direct:  ${JSON.stringify(direct.data)}\n  gateway: ${JSON.stringify(viaGateway.data)}`);
    }
    await send(targets.gatewayFederated);

    const samples: Record<PathName, bigint[]> = { direct: [], gateway: [], gatewayFederated: [] };
    const wall: Record<PathName, bigint> = { direct: 0n, gateway: 0n, gatewayFederated: 0n };

    /**
     * `count` requests to one target, `concurrency` in flight; latencies recorded when `record`.
     * The direct path's token is refreshed (untimed) before a block, so a block must take less than
     * TTL − REMINT_MARGIN_SECONDS (40 s by default); an expired token shows up as an abort, never as data.
     */
    async function runBlock(target: Target, count: number, record: boolean): Promise<void> {
      if (target.name === 'direct' && !options.mintPerRequest) await refreshUserToken();
      let next = 0;
      const worker = async () => {
        while (next < count) {
          next++;
          const start = process.hrtime.bigint();
          const reply = await post(target.url, await target.headers(), target.body);
          const elapsed = process.hrtime.bigint() - start;
          target.check(reply);
          if (record) samples[target.name].push(elapsed);
        }
      };
      const started = process.hrtime.bigint();
      await Promise.all(Array.from({ length: Math.min(options.concurrency, count) }, worker));
      if (record) wall[target.name] += process.hrtime.bigint() - started;
    }

    /**
     * Blocks of every path in turn, rotating which goes first each round; the federated path gets
     * blocks scaled to its share (`federated / requests`) so it spreads over the whole run too.
     */
    async function interleaved(perPath: number, federated: number, record: boolean): Promise<void> {
      const order: PathName[] = federated > 0 ? ['direct', 'gateway', 'gatewayFederated'] : ['direct', 'gateway'];
      const rounds = Math.ceil(perPath / options.block);
      const quota: Record<PathName, number> = { direct: perPath, gateway: perPath, gatewayFederated: federated };
      const done: Record<PathName, number> = { direct: 0, gateway: 0, gatewayFederated: 0 };
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < order.length; i++) {
          const name = order[(round + i) % order.length]!;
          const due = Math.round((quota[name] * (round + 1)) / rounds); // cumulative target after this round
          if (due > done[name]) await runBlock(targets[name], due - done[name], record);
          done[name] = Math.max(done[name], due);
        }
      }
    }

    const benchStarted = process.hrtime.bigint();
    if (options.warmup > 0) {
      log(`warming up: ${options.warmup} requests per path…`);
      await interleaved(options.warmup, options.federated > 0 ? options.warmup : 0, false);
    }
    log(
      `measuring: ${options.requests} requests per path (${options.federated} for users + rbac), ` +
        `concurrency ${options.concurrency}, blocks of ${options.block}…`,
    );
    await interleaved(options.requests, options.federated, true);
    const durationSeconds = Math.round(Number(process.hrtime.bigint() - benchStarted) / 1e7) / 100;

    const results = Object.fromEntries(
      (Object.keys(samples) as PathName[]).filter((name) => samples[name].length > 0).map((name) => [name, latencyStats(samples[name], wall[name])]),
    ) as Record<'direct' | 'gateway', LatencyStats> & Partial<Record<PathName, LatencyStats>>;
    const ratio = (q: 'p50' | 'p90' | 'p99' | 'mean') => Math.round((results.gateway[q] / results.direct[q]) * 100) / 100;
    const ratios = { p50: ratio('p50'), p90: ratio('p90'), p99: ratio('p99'), mean: ratio('mean') };

    const report = {
      ...benchEnvironment('gateway-overhead', command),
      database: options.embedded ? 'pglite' : 'postgresql',
      requests: options.requests,
      federatedRequests: options.federated,
      warmup: options.warmup,
      concurrency: options.concurrency,
      blockSize: options.block,
      tokenMinting: options.mintPerRequest
        ? 'direct path mints its internal token inside the timed region of every request'
        : `direct path: one internal token minted outside the timed region (TTL ${ttlSeconds} s), re-minted untimed ${remints} time(s) when under ${REMINT_MARGIN_SECONDS} s was left`,
      queries: { direct: QUERY, gateway: QUERY, gatewayFederated: FEDERATED_QUERY },
      unit: 'ms',
      paths: results,
      ratios: { description: 'gateway / direct, same query', ...ratios },
      durationSeconds,
    };

    const rows = (Object.keys(results) as PathName[]).map((name) => {
      const s = results[name]!;
      return [PATH_LABELS[name], s.p50.toFixed(3), s.p90.toFixed(3), s.p99.toFixed(3), s.mean.toFixed(3), s.requestsPerSecond.toFixed(1)];
    });
    const header = ['path', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'req/s'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    const table = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
    const summary = `gateway / direct: p50 ×${ratios.p50.toFixed(2)}, p99 ×${ratios.p99.toFixed(2)} (p90 ×${ratios.p90.toFixed(2)}, mean ×${ratios.mean.toFixed(2)})`;

    const markdown = [
      '# Gateway overhead',
      '',
      `Produced by \`${command}\` on ${report.date}.`,
      '',
      `- Node ${report.node}, ${report.cpu.model} (${report.cpu.cores} cores), ${report.os}`,
      `- Database: ${report.database}`,
      `- ${report.requests} measured requests per path (${report.federatedRequests} for users + rbac) after ${report.warmup} warm-up, ` +
        `concurrency ${report.concurrency}, paths interleaved in blocks of ${report.blockSize}`,
      `- Token: ${report.tokenMinting}`,
      `- Everything runs in one Node process (client, gateway, subgraphs${options.embedded ? ', PGlite' : ''}); total ${durationSeconds} s`,
      '',
      '| path | p50 ms | p90 ms | p99 ms | mean ms | req/s |',
      '|---|---:|---:|---:|---:|---:|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      `**${summary}**`,
      '',
      'Queries:',
      '',
      `- direct and gateway: \`${QUERY}\``,
      `- gateway (users + rbac): \`${FEDERATED_QUERY}\` (no direct equivalent)`,
      '',
    ].join('\n');

    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(path.join(RESULTS_DIR, 'gateway-overhead.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(path.join(RESULTS_DIR, 'gateway-overhead.md'), markdown);

    console.log(`\n${table}\n\n${summary}\n`);
    log(`wrote ${path.relative(process.cwd(), RESULTS_DIR)}/gateway-overhead.{json,md} (${durationSeconds} s)`);
  } finally {
    await cleanUp();
  }
}

runBench(main);
