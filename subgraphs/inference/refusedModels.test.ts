import { describe, expect, it } from 'vitest';
import type { ProjectScope } from '../../lib/identity.js';
import { RefusedModels } from './refusedModels.js';
import type { RuntimeRow } from './store.js';

const scope = { tenantId: 't', organizationId: 'org-a', projectId: 'p' } as ProjectScope;

const row = (clusterId: string, failure: string | null, ready = 0): RuntimeRow => ({
  cluster_id: clusterId,
  tenant_id: 't',
  model_id: 'm',
  desired_replicas: 1,
  ready_replicas: ready,
  in_flight_requests: 0,
  status_message: failure ? `cannot run here: ${failure}` : 'starting',
  autoscaling: null,
  failure,
  updated_at: new Date(),
});

/** RefusedModels over a tenant whose connected clusters, the org's usable ones and the model's reports are given. */
function refusedModels(connected: string[], usable: string[], rows: RuntimeRow[]) {
  return new RefusedModels(
    { ready: async () => [], onAnnounced: () => () => undefined },
    { forModels: async () => rows },
    { usableClusters: async () => new Set(usable) },
    { connectedClusters: () => connected },
  );
}

describe('a model is refused only when every usable, connected cluster refuses it', () => {
  it('one cluster refusing: the request is refused with its reason', async () => {
    const error = await refusedModels(['c1'], ['c1'], [row('c1', 'GGUF only')]).refusal(scope, 'm');
    expect(error?.code).toBe('FAILED_PRECONDITION');
    expect(error?.message).toBe('Model m cannot run on any cluster serving your organization: GGUF only');
  });

  it('a usable cluster that has not reported the model, or reports it starting or ready, keeps the request waiting', async () => {
    expect(await refusedModels(['c1', 'c2'], ['c1', 'c2'], [row('c1', 'GGUF only')]).refusal(scope, 'm')).toBeNull();
    expect(await refusedModels(['c1', 'c2'], ['c1', 'c2'], [row('c1', 'GGUF only'), row('c2', null)]).refusal(scope, 'm')).toBeNull();
    expect(await refusedModels(['c1'], ['c1'], [row('c1', 'stale failure', 1)]).refusal(scope, 'm')).toBeNull();
  });

  it("another organization's cluster neither refuses for this one nor keeps it waiting", async () => {
    // c2 is connected but not usable by org-a: its report does not count either way.
    expect(await refusedModels(['c1', 'c2'], ['c1'], [row('c1', 'GGUF only'), row('c2', null)]).refusal(scope, 'm')).not.toBeNull();
    expect(await refusedModels(['c2'], ['c1'], [row('c2', 'GGUF only')]).refusal(scope, 'm')).toBeNull();
  });

  it('no connected cluster: nothing to say yet', async () => {
    expect(await refusedModels([], ['c1'], [row('c1', 'GGUF only')]).refusal(scope, 'm')).toBeNull();
  });

  it('different reasons are each named with their cluster', async () => {
    const error = await refusedModels(['c1', 'c2'], ['c1', 'c2'], [row('c1', 'GGUF only'), row('c2', 'no GPU')]).refusal(scope, 'm');
    expect(error?.message).toContain('cluster c1: GGUF only; cluster c2: no GPU');
  });
});
