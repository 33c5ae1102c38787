import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Identity } from '../../lib/identity.js';
import { silentLogger } from '../../lib/logging.js';
import { createMemoryPubSub } from '../../lib/pubsub.js';
import { MODELS_CHANGED_CHANNEL } from './channels.js';
import { CachedModels } from './modelCache.js';
import type { ModelsClient, ServableModel } from './modelsClient.js';

function caller(tenantId: string, projectId: string, scopes = ['api.model.read', 'api.model.write']): { requestId: string; identity: Identity } {
  return {
    requestId: 'r',
    identity: {
      principal: { userId: 'u', internalUserId: 'u', tenantId, isServiceAccount: false, apiKey: null, organizations: [], projects: [] },
      project: { organizationId: `org-of-${projectId}`, projectId, role: 'projectMember', scopes },
    },
  };
}

const model = (id: string, activationStatus = 'ACTIVE'): ServableModel =>
  ({ id, activationStatus, loadingStatus: 'SUCCEEDED', config: { clusterAllocationPolicy: { enableOnDemandAllocation: true } } }) as ServableModel;

/** The models subgraph, as a table by `project model`; counts the questions asked. */
function modelsSubgraph(table: Map<string, ServableModel>) {
  const asked: string[] = [];
  let hold: Promise<void> | null = null;
  const client: ModelsClient = {
    model: async (c, id) => {
      const key = `${c.identity!.project!.projectId} ${id}`;
      asked.push(key);
      const answer = table.get(key) ?? null;
      if (hold) await hold;
      return answer;
    },
    activate: async (_c, id) => {
      for (const [key, value] of table) if (value.id === id) table.set(key, model(id));
    },
    owners: async () => new Map(),
  };
  return { client, asked, holdAnswers: (until: Promise<void>) => (hold = until) };
}

afterEach(() => vi.useRealTimers());

describe('CachedModels: the caller’s view of models, in memory', () => {
  it('asks once per (tenant, organization, project, model); another project asks for itself', async () => {
    const table = new Map([
      ['p1 m', model('m')],
      ['p2 m', model('m', 'INACTIVE')],
    ]);
    const subgraph = modelsSubgraph(table);
    const models = new CachedModels(subgraph.client, silentLogger());
    for (let i = 0; i < 5; i++) expect(await models.model(caller('t', 'p1'), 'm')).toMatchObject({ activationStatus: 'ACTIVE' });
    expect(await models.model(caller('t', 'p2'), 'm')).toMatchObject({ activationStatus: 'INACTIVE' });
    expect(await models.model(caller('t2', 'p1'), 'm')).toMatchObject({ activationStatus: 'ACTIVE' });
    expect(subgraph.asked).toEqual(['p1 m', 'p2 m', 'p1 m']);
  });

  it('drops the tenant’s answers when a change is announced, and keeps no answer asked before it', async () => {
    const table = new Map([['p m', model('m')]]);
    const subgraph = modelsSubgraph(table);
    const models = new CachedModels(subgraph.client, silentLogger());
    const pubsub = createMemoryPubSub();
    await models.listen(pubsub);
    await models.model(caller('t', 'p'), 'm');
    await models.model(caller('other', 'p'), 'm');
    table.set('p m', model('m', 'INACTIVE'));
    const heard = new Promise<void>((resolve) => void pubsub.subscribe(MODELS_CHANGED_CHANNEL, () => resolve()));
    await pubsub.publish(MODELS_CHANGED_CHANNEL, 't');
    await heard;
    expect(await models.model(caller('t', 'p'), 'm')).toMatchObject({ activationStatus: 'INACTIVE' });
    // Another tenant's answers stay.
    await models.model(caller('other', 'p'), 'm');
    expect(subgraph.asked).toEqual(['p m', 'p m', 'p m']);

    // An answer in flight when a change is announced is returned, but not kept.
    let release!: () => void;
    void subgraph.holdAnswers(new Promise((resolve) => (release = resolve)));
    table.set('p q', model('q', 'INACTIVE'));
    const inFlight = models.model(caller('t', 'p'), 'q');
    table.set('p q', model('q'));
    models.changed('t');
    release();
    expect(await inFlight).toMatchObject({ activationStatus: 'INACTIVE' });
    void subgraph.holdAnswers(Promise.resolve());
    expect(await models.model(caller('t', 'p'), 'q')).toMatchObject({ activationStatus: 'ACTIVE' });
    await pubsub.close();
  });

  it('keeps no "not found", and no answer past its TTL', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const table = new Map<string, ServableModel>();
    const subgraph = modelsSubgraph(table);
    const models = new CachedModels(subgraph.client, silentLogger(), 5_000);
    expect(await models.model(caller('t', 'p'), 'm')).toBeNull();
    table.set('p m', model('m'));
    expect(await models.model(caller('t', 'p'), 'm')).toMatchObject({ id: 'm' });
    table.set('p m', model('m', 'INACTIVE'));
    vi.advanceTimersByTime(4_999);
    expect(await models.model(caller('t', 'p'), 'm')).toMatchObject({ activationStatus: 'ACTIVE' });
    vi.advanceTimersByTime(2);
    expect(await models.model(caller('t', 'p'), 'm')).toMatchObject({ activationStatus: 'INACTIVE' });
    expect(subgraph.asked).toHaveLength(3);
  });

  it('activating drops the tenant’s answers at once; a caller without api.model.read is always asked for (and refused there)', async () => {
    const table = new Map([['p m', model('m', 'INACTIVE')]]);
    const subgraph = modelsSubgraph(table);
    const models = new CachedModels(subgraph.client, silentLogger());
    expect(await models.model(caller('t', 'p'), 'm')).toMatchObject({ activationStatus: 'INACTIVE' });
    await models.activate(caller('t', 'p'), 'm');
    expect(await models.model(caller('t', 'p'), 'm')).toMatchObject({ activationStatus: 'ACTIVE' });
    const writer = caller('t', 'p', ['api.model.write']);
    await models.model(writer, 'm');
    await models.model(writer, 'm');
    expect(subgraph.asked).toHaveLength(4);
  });
});
