import { describe, expect, it } from 'vitest';
import { isNotebookPath, parseNotebookPath } from './notebookProxy.js';

const BASE = '/v1/sessions/cluster-abc123/v1/services/notebooks';

describe('notebook paths', () => {
  it("name Jupyter's port by default, another port by a segment of digits", () => {
    expect(parseNotebookPath(`${BASE}/lab/team-a/lab/tree`)).toEqual({
      clusterId: 'cluster-abc123',
      notebook: 'lab',
      namespace: 'team-a',
      port: 8888,
      rest: '/lab/tree',
      publicPrefix: `${BASE}/lab/team-a`,
    });
    expect(parseNotebookPath(`${BASE}/lab/team-a`)).toMatchObject({ port: 8888, rest: '' });
    expect(parseNotebookPath(`${BASE}/lab/team-a/8888/api`)).toMatchObject({ port: 8888, rest: '/api', publicPrefix: `${BASE}/lab/team-a` });
    expect(parseNotebookPath(`${BASE}/nb-AbC123/team-a/6006/`)).toMatchObject({
      notebook: 'nb-AbC123',
      port: 6006,
      rest: '/',
      publicPrefix: `${BASE}/nb-AbC123/team-a/6006`,
    });
  });

  it('refuse what cannot name a notebook: 404 with the expected form', () => {
    for (const path of [
      `${BASE}`,
      `${BASE}/lab`,
      `${BASE}/Lab_1/team-a/`,
      `${BASE}/lab/Team_A/`,
      `${BASE}/lab/team-a/70000/`,
      '/v1/sessions/not-a-cluster/v1/services/notebooks/lab/ns/',
    ]) {
      expect(() => parseNotebookPath(path), path).toThrow(expect.objectContaining({ status: 404 }));
    }
  });

  it('are told apart from Kubernetes API paths', () => {
    expect(isNotebookPath(`${BASE}/lab/team-a/`)).toBe(true);
    expect(isNotebookPath('/v1/sessions/cluster-abc123/api/v1/namespaces/team-a/pods')).toBe(false);
    expect(isNotebookPath('/v1/sessions/cluster-abc123/v1/services/notebooksx')).toBe(false);
  });
});
