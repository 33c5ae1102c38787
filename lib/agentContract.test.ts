import { describe, expect, it } from 'vitest';
import { agentRoutes, parseAgentRoute, type AgentRoute } from './agentContract.js';

describe('the agent contract', () => {
  it('reads back every route the control plane builds', () => {
    const cases: [string, AgentRoute][] = [
      [agentRoutes.healthz(), { kind: 'healthz' }],
      [agentRoutes.reports(), { kind: 'reports' }],
      [agentRoutes.reconcile(), { kind: 'reconcile', wake: null }],
      [agentRoutes.reconcile('org/llama 3?&x=1'), { kind: 'reconcile', wake: 'org/llama 3?&x=1' }],
      [agentRoutes.startJob(), { kind: 'startJob' }],
      [agentRoutes.jobAction('ftjob-abc', 'cancel'), { kind: 'jobAction', jobId: 'ftjob-abc', action: 'cancel' }],
      [agentRoutes.jobAction('a/b?c%d', 'delete'), { kind: 'jobAction', jobId: 'a/b?c%d', action: 'delete' }],
      [agentRoutes.runtime('ft:llama/3:org:sfx', '/v1/chat/completions'), { kind: 'runtime', modelId: 'ft:llama/3:org:sfx', path: '/v1/chat/completions' }],
      [agentRoutes.runtime('m%2F', '/v1/embeddings?x=/y'), { kind: 'runtime', modelId: 'm%2F', path: '/v1/embeddings?x=/y' }],
      [agentRoutes.kubernetes('/api/v1/namespaces/default/pods?watch=1'), { kind: 'kubernetes', path: '/api/v1/namespaces/default/pods?watch=1' }],
    ];
    for (const [path, route] of cases) expect(parseAgentRoute(path), path).toEqual(route);
    for (const action of ['cancel', 'stop', 'start', 'delete'] as const) {
      expect(parseAgentRoute(agentRoutes.jobAction('job-1', action))).toEqual({ kind: 'jobAction', jobId: 'job-1', action });
    }
  });

  it('refuses paths it does not build: unknown, malformed or badly encoded', () => {
    for (const path of [
      '/',
      '/mariner/v1',
      '/mariner/v1/',
      '/mariner/v1/healthz/',
      '/mariner/v1/jobs/',
      '/mariner/v1/jobs/j1',
      '/mariner/v1/jobs/j1/explode',
      '/mariner/v1/jobs/j1/cancel/again',
      '/mariner/v1/jobs//cancel',
      '/mariner/v1/jobs/%E0%A4%A/cancel',
      '/mariner/v1/runtimes/',
      '/mariner/v1/runtimes/m1',
      '/mariner/v1/runtimes//v1/chat/completions',
      '/mariner/v1/runtimes/%ZZ/v1/chat/completions',
      // A runtime path read as another host by new URL(path, base): never forwarded.
      '/mariner/v1/runtimes/m1//evil.example/v1/chat/completions',
      '/mariner/v1/runtimes/m1/\\evil.example/x',
      '/k8s',
      '/k8sapi/v1',
      '/v1/chat/completions',
    ]) {
      expect(parseAgentRoute(path), path).toBeNull();
    }
  });

  it('refuses to build a route that would not read back', () => {
    expect(() => agentRoutes.runtime('m1', 'v1/chat/completions')).toThrow(/starts with a single \//);
    expect(() => agentRoutes.runtime('m1', '//evil.example/')).toThrow(/starts with a single \//);
    expect(() => agentRoutes.runtime('', '/v1/models')).toThrow(/cannot be empty/);
    expect(() => agentRoutes.jobAction('', 'cancel')).toThrow(/cannot be empty/);
    expect(() => agentRoutes.kubernetes('api/v1')).toThrow(/starts with \//);
  });
});
