import { parse, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logging.js';
import { actionsOf, AuditRecorder, createAuditPlugin, type AuditEventRecord } from './audit.js';

const record = (requestId: string): AuditEventRecord => ({
  occurredAt: new Date().toISOString(),
  requestId,
  userId: null,
  apiKeyId: null,
  organizationId: null,
  projectId: null,
  clientAddress: null,
  kind: 'mutation',
  operationName: null,
  actions: [],
  outcome: 'OK',
});

describe('actionsOf: what an entry keeps of a mutation', () => {
  it('keeps field and argument names, through fragments and aliases, and values only for ids', () => {
    const document = parse(`
      mutation M($input: CreateApiKeyInput!, $secret: String!) {
        k: createApiKey(input: $input) { ...F }
        registerCluster(name: "c", registrationKey: $secret, clusterIds: ["cluster-1", "cluster-2"]) { id }
      }
      fragment F on CreateApiKeyPayload { secret }`);
    const operation = document.definitions[0] as OperationDefinitionNode;
    const actions = actionsOf(document, operation, { input: { name: 'ci', projectId: 'proj-1', password: 'hunter2' }, secret: 'sk-very-secret' });
    expect(actions).toEqual([
      {
        field: 'createApiKey',
        arguments: [
          { name: 'input', id: null },
          { name: 'input.name', id: null },
          { name: 'input.projectId', id: 'proj-1' },
          { name: 'input.password', id: null },
        ],
      },
      {
        field: 'registerCluster',
        arguments: [
          { name: 'name', id: null },
          { name: 'registrationKey', id: null },
          { name: 'clusterIds', id: 'cluster-1,cluster-2' },
        ],
      },
    ]);
    expect(JSON.stringify(actions)).not.toMatch(/hunter2|sk-very-secret/);
  });
});

describe('AuditRecorder', () => {
  it('sends entries in batches, and keeps a failed batch for the next try instead of losing it', async () => {
    const sent: string[][] = [];
    let failing = true;
    const recorder = new AuditRecorder({
      logger: silentLogger(),
      batchSize: 2,
      flushIntervalMs: 60_000,
      sink: async (events) => {
        if (failing) throw new Error('audit subgraph down');
        sent.push(events.map((e) => e.requestId));
      },
    });
    recorder.record(record('a'));
    await recorder.flush();
    expect(recorder.pending()).toBe(1);
    failing = false;
    recorder.record(record('b'));
    recorder.record(record('c'));
    await recorder.flush();
    await recorder.stop();
    expect(sent.flat()).toEqual(['a', 'b', 'c']);
    expect(sent[0]).toEqual(['a', 'b']);
  });

  it('drops the oldest past its bound rather than growing without end', async () => {
    const recorder = new AuditRecorder({
      logger: silentLogger(),
      maxBuffered: 3,
      batchSize: 100,
      flushIntervalMs: 60_000,
      sink: () => Promise.reject(new Error('down')),
    });
    for (const id of ['a', 'b', 'c', 'd', 'e']) recorder.record(record(id));
    expect(recorder.pending()).toBe(3);
    await recorder.stop();
  });
});

describe('createAuditPlugin', () => {
  const document = parse('mutation { reportRuntimes(input: { clusterId: "cluster-1" }) }');
  const operation = document.definitions[0] as OperationDefinitionNode;
  async function recorded(worker: object | null, errors?: object[]): Promise<AuditEventRecord[]> {
    const entries: AuditEventRecord[] = [];
    const hooks = await createAuditPlugin({ record: (e) => entries.push(e) }).requestDidStart!({} as never);
    await (hooks as { willSendResponse(ctx: unknown): Promise<void> }).willSendResponse({
      document,
      operation,
      request: { variables: {} },
      response: { body: { kind: 'single', singleResult: errors ? { errors } : { data: {} } } },
      contextValue: { requestId: 'r1', identity: null, worker, clientAddress: '10.0.0.9' },
    });
    return entries;
  }

  it("records a caller's mutation, skips a cluster agent's successful report, and records the agent's refused one", async () => {
    expect(await recorded(null)).toMatchObject([{ requestId: 'r1', clientAddress: '10.0.0.9', outcome: 'OK', actions: [{ field: 'reportRuntimes' }] }]);
    expect(await recorded({ clusterName: 'gpu-east' })).toEqual([]);
    expect(await recorded({ clusterName: 'gpu-east' }, [{ message: 'no', extensions: { code: 'FORBIDDEN' } }])).toMatchObject([
      { userId: 'worker:gpu-east', outcome: 'FORBIDDEN' },
    ]);
  });
});
