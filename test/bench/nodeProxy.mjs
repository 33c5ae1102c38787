// @ts-check
/**
 * The node-proxy path of the peer benchmark (test/bench/peers.ts), run as a child process:
 * `node test/bench/nodeProxy.mjs --upstream http://127.0.0.1:<runtime port>`. Not part of Mariner.
 *
 * The floor any Node.js gateway pays: the least a reverse proxy on Node's HTTP stack does to relay one
 * request and its answer. `http.createServer` takes the request, `http.request` on a keep-alive `http.Agent`
 * sends it to the runtime at the same path, the status and content-type come back, and both bodies are
 * piped as they arrive (a stream's chunks one by one). Nothing else, on purpose: no auth, no parsing, no
 * logging, no other header. A gateway's CPU per request cannot go below this process's.
 *
 * It listens on a free loopback port and prints `node-proxy listening on http://127.0.0.1:<port>` once ready.
 * An upstream error answers 502 (or ends the answer if it has started); a client that goes away aborts the
 * upstream request. SIGTERM ends it (Node's default).
 */
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { upstream: { type: 'string' } }, strict: true });
if (!values.upstream) {
  process.stderr.write('usage: node nodeProxy.mjs --upstream http://HOST:PORT\n');
  process.exit(2);
}
const upstream = new URL(values.upstream);
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((request, response) => {
  /** @type {http.OutgoingHttpHeaders} */
  const headers = {};
  // The body's own framing and type: without content-length Node would re-frame it as chunked.
  if (request.headers['content-type']) headers['content-type'] = request.headers['content-type'];
  if (request.headers['content-length']) headers['content-length'] = request.headers['content-length'];
  const forward = http.request({ host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers, agent }, (answer) => {
    /** @type {http.OutgoingHttpHeaders} */
    const answerHeaders = {};
    if (answer.headers['content-type']) answerHeaders['content-type'] = answer.headers['content-type'];
    response.writeHead(answer.statusCode ?? 502, answerHeaders);
    answer.pipe(response);
  });
  forward.on('error', (error) => {
    if (response.headersSent) response.destroy(error);
    else response.writeHead(502, { 'content-type': 'text/plain' }).end(`node-proxy: ${error.message}\n`);
  });
  response.on('close', () => {
    if (!response.writableFinished) forward.destroy();
  });
  request.pipe(forward);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  process.stdout.write(`node-proxy listening on http://127.0.0.1:${port}\n`);
});
