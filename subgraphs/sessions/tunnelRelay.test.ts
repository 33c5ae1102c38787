import { describe, expect, it } from 'vitest';
import { checkedRequestPath, forwardableHeaders, KUBE_REQUEST_HEADERS, NOTEBOOK_REQUEST_HEADERS } from './tunnelRelay.js';

const CALLER = {
  host: 'mariner.example',
  authorization: 'Bearer sk-user',
  cookie: 'mariner_session=sealed; _xsrf=abc',
  'openai-project': 'proj-1',
  'impersonate-user': 'system:admin',
  'x-mariner-upgrade': '1',
  'x-mariner-upgrade-method': 'DELETE',
  'x-mariner-upgrade-headers': '{}',
  'x-http-method-override': 'DELETE',
  'x-forwarded-for': '10.0.0.1',
  origin: 'https://mariner.example',
  referer: 'https://mariner.example/',
  'transfer-encoding': 'chunked',
  connection: 'keep-alive, Upgrade, X-Something',
  upgrade: 'websocket',
  accept: 'application/json',
  'user-agent': 'kubectl/v1.31.0',
  'content-type': 'application/json',
  'x-stream-protocol-version': 'v4.channel.k8s.io',
  'sec-websocket-key': 'abc==',
  'sec-websocket-version': '13',
  'sec-websocket-protocol': 'v5.channel.k8s.io',
  'x-xsrftoken': 'abc',
};

describe('what crosses the tunnel', () => {
  it('Kubernetes API requests carry the allow-list only: no credential, impersonation, project, x-mariner-* or method override', () => {
    expect(forwardableHeaders(CALLER, { allow: KUBE_REQUEST_HEADERS, upgrade: false })).toEqual({
      accept: 'application/json',
      'user-agent': 'kubectl/v1.31.0',
      'content-type': 'application/json',
      'x-stream-protocol-version': 'v4.channel.k8s.io',
    });
  });

  it('an upgrade adds the WebSocket handshake and Connection: Upgrade, nothing else the caller listed', () => {
    expect(forwardableHeaders(CALLER, { allow: KUBE_REQUEST_HEADERS, upgrade: true })).toEqual({
      accept: 'application/json',
      'user-agent': 'kubectl/v1.31.0',
      'content-type': 'application/json',
      'x-stream-protocol-version': 'v4.channel.k8s.io',
      'sec-websocket-key': 'abc==',
      'sec-websocket-version': '13',
      'sec-websocket-protocol': 'v5.channel.k8s.io',
      connection: 'Upgrade',
      upgrade: 'websocket',
    });
  });

  it("notebook requests carry browser headers, Jupyter's XSRF header and the cookie they are given; never Origin or Referer", () => {
    expect(forwardableHeaders(CALLER, { allow: NOTEBOOK_REQUEST_HEADERS, upgrade: false, cookie: '_xsrf=abc' })).toEqual({
      accept: 'application/json',
      'user-agent': 'kubectl/v1.31.0',
      'content-type': 'application/json',
      'x-xsrftoken': 'abc',
      cookie: '_xsrf=abc',
    });
  });

  it('paths: segments are kept as sent, empty ones dropped, the query apart', () => {
    expect(checkedRequestPath('/v1/sessions/cluster-a/api/v1/namespaces/team-a/pods?watch=true&labelSelector=a%3Db')).toEqual({
      path: '/v1/sessions/cluster-a/api/v1/namespaces/team-a/pods',
      segments: ['v1', 'sessions', 'cluster-a', 'api', 'v1', 'namespaces', 'team-a', 'pods'],
      query: '?watch=true&labelSelector=a%3Db',
    });
    expect(checkedRequestPath('/v1//sessions/c/lab/tree/My%20Notebook.ipynb/')).toMatchObject({
      path: '/v1/sessions/c/lab/tree/My%20Notebook.ipynb/',
      segments: ['v1', 'sessions', 'c', 'lab', 'tree', 'My Notebook.ipynb'],
    });
    expect(checkedRequestPath('http://mariner.example/v1/sessions/c/api?x=1')).toMatchObject({ path: '/v1/sessions/c/api', query: '?x=1' });
    expect(checkedRequestPath('/v1/sessions/c/files/.ipynb_checkpoints/...')).toMatchObject({
      segments: ['v1', 'sessions', 'c', 'files', '.ipynb_checkpoints', '...'],
    });
  });

  it('paths: a malformed escape, a dot segment plain or encoded, an encoded slash or backslash, a control character: 400', () => {
    for (const target of [
      '/a/%E0%A4%A',
      '/a/%zz',
      '/a/../b',
      '/a/./b',
      '/a/%2e%2e/b',
      '/a/%2E/b',
      '/a/.%2e/b',
      '/a/..%2Fb',
      '/a/x%2fy',
      '/a/..%5Cb',
      '/a/x%00y',
      '/a/x%0Ay',
    ]) {
      expect(() => checkedRequestPath(target), target).toThrow(expect.objectContaining({ status: 400 }));
    }
  });
});
