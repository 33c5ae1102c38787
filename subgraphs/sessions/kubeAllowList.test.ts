import { describe, expect, it } from 'vitest';
import { touchesSecrets } from '../../agent/kubernetes/apiProxy.js';
import { kubeRequestOf, refusedKubeRequest } from './kubeAllowList.js';

describe('the /v1/sessions allow-list', () => {
  const off = { allowExec: false };

  it('reads RBAC verbs from the method and the path as the apiserver does', () => {
    expect(kubeRequestOf('/api/v1/namespaces/a/pods', 'GET')).toEqual({ resource: '/pods', namespace: 'a', verb: 'list' });
    expect(kubeRequestOf('/api/v1/namespaces/a/pods?watch=true', 'GET')).toEqual({ resource: '/pods', namespace: 'a', verb: 'watch' });
    expect(kubeRequestOf('/api/v1/watch/namespaces/a/pods', 'GET')).toEqual({ resource: '/pods', namespace: 'a', verb: 'watch' });
    expect(kubeRequestOf('/api/v1/namespaces/a/pods/p/log?follow=true', 'GET')).toEqual({ resource: '/pods/log', namespace: 'a', verb: 'get' });
    expect(kubeRequestOf('/apis/batch/v1/namespaces/a/jobs/j', 'DELETE')).toEqual({ resource: 'batch/jobs', namespace: 'a', verb: 'delete' });
    expect(kubeRequestOf('/api/v1/namespaces/a/pods', 'DELETE')).toEqual({ resource: '/pods', namespace: 'a', verb: 'deletecollection' });
    expect(kubeRequestOf('/api/v1/nodes', 'GET')).toEqual({ resource: '/nodes', namespace: undefined, verb: 'list' });
    expect(kubeRequestOf('/apis/apps/v1', 'GET')).toBeNull();
  });

  it('lets a member look at their work and delete a stuck pod', () => {
    for (const [method, path] of [
      ['GET', '/api/v1/namespaces/a/pods'],
      ['GET', '/api/v1/namespaces/a/pods/p/log?follow=true'],
      ['GET', '/apis/batch/v1/namespaces/a/jobs?watch=1'],
      ['GET', '/api/v1/namespaces/a/events'],
      ['GET', '/api/v1/namespaces/a'],
      ['DELETE', '/api/v1/namespaces/a/pods/p'],
      ['GET', '/api'],
      ['GET', '/openapi/v3'],
      ['GET', '/api/v1/nodes'],
    ] as const) {
      expect(refusedKubeRequest(path, method, off), `${method} ${path}`).toBeNull();
    }
  });

  it('never Secrets, whatever the verb or spelling; exec only when turned on; nothing it does not list', () => {
    for (const path of ['/api/v1/namespaces/a/secrets', '/api/v1/namespaces/a/secrets/s', '/api/v1/namespaces/a/%73ecrets/s', '/api/v1/secrets']) {
      expect(refusedKubeRequest(path, 'GET', { allowExec: true }), path).toMatch(/never forwards Secrets/);
    }
    expect(refusedKubeRequest('/api/v1/namespaces/a/pods/p/exec?command=sh', 'GET', off)).toMatch(/MARINER_SESSIONS_EXEC/);
    expect(refusedKubeRequest('/api/v1/namespaces/a/pods/p/exec?command=sh', 'GET', { allowExec: true })).toBeNull();
    expect(refusedKubeRequest('/api/v1/namespaces/a/pods/p/exec?command=sh', 'POST', { allowExec: true })).toBeNull();
    expect(refusedKubeRequest('/api/v1/namespaces/a/pods', 'DELETE', off)).toMatch(/deletecollection on pods is not forwarded/);
    expect(refusedKubeRequest('/api/v1/namespaces/a/configmaps', 'POST', off)).toMatch(/create on configmaps/);
    expect(refusedKubeRequest('/api/v1/namespaces/a/serviceaccounts/default/token', 'POST', off)).toMatch(/serviceaccounts\/token is not among/);
    expect(refusedKubeRequest('/api/v1/namespaces/a/services/nb/proxy/', 'GET', off)).toMatch(/services\/proxy is not among/);
    expect(refusedKubeRequest('/api/v1/namespaces/a', 'DELETE', off)).toMatch(/delete of a namespace/);
    expect(refusedKubeRequest('/api/v1/pods', 'GET', off)).toMatch(/pods \(cluster-scoped\)/);
  });

  it('the agent refuses Secrets paths on its own too, however they are spelt (agent/kubernetes/apiProxy.ts)', () => {
    for (const path of [
      '/api/v1/namespaces/a/secrets',
      '/api/v1/namespaces/a/secrets/s?x=1',
      '/api/v1/watch/namespaces/a/secrets',
      '/api/v1/secrets',
      '/api/v1/namespaces/a/%73ecrets/s',
      '/api/v1/namespaces/a/%zz',
    ]) {
      expect(touchesSecrets(path), path).toBe(true);
    }
    for (const path of ['/api/v1/namespaces/a/pods/secrets/log', '/api/v1/namespaces/secrets/pods', '/apis/apps/v1/namespaces/a/deployments']) {
      expect(touchesSecrets(path), path).toBe(false);
    }
  });
});
