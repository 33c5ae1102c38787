import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { jobObjectName } from '../agent/kubernetes/jobManifests.js';
import { clusterQueueName, cohortName } from '../agent/kubernetes/kueueQueues.js';
import { createObjectStore, type ObjectStore } from '../lib/objectStore/index.js';
import { startTestS3Server, type TestS3Server } from '../lib/objectStore/testS3Server.js';
import { silentLogger } from '../lib/logging.js';
import { playKueueAdmission } from './support/kueue.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from './support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * Kueue managed per project (issue 22): an organization owner sets a project's GPU quota on a cluster
 * (GraphQL and REST); the cluster's agent keeps a ClusterQueue and LocalQueue of it (Kubernetes API
 * double); Kueue's admission (played on the double) lets one job run and holds the next back, and the
 * project's quota shows the GPUs in use and the job waiting for quota with Kueue's message.
 */
const NS = 'team-a';
const SET = `mutation($input: SetProjectGpuQuotaInput!) { setProjectGpuQuota(input: $input) { clusterId resource flavor nominalGpus borrowingAllowed usedGpus } }`;
const QUOTAS = `query($id: ID!) { projectGpuQuotas(projectId: $id) { clusterId nominalGpus borrowingAllowed usedGpus waitingJobs { jobId namespace message position } usageReportedAt } }`;

describe('GPU quotas per project, kept as Kueue queues by the agent (Kubernetes API double)', () => {
  let kube: KubeApiServer;
  let s3: TestS3Server;
  let t: TestPlatform;
  let agent: Agent;
  let agentStore: ObjectStore;
  let kubeconfigDir: string;
  let clusterId: string;
  let otherClusterId: string;
  let otherClusterKey: string;
  let teamA: { organizationId: string; projectId: string; key: string };
  let teamB: { organizationId: string; projectId: string; key: string };
  let memberKey: string;

  const as = (token: string) => ({ token });
  const rest = async (method: string, url: string, token: string, body?: unknown) => {
    const response = await fetch(`${t.url}${url}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as any };
  };
  const quotaPath = () => `/v1/organizations/${teamA.organizationId}/projects/${teamA.projectId}/gpu_quotas`;
  const quotas = async (token = teamA.key) => (await t.gqlOk(QUOTAS, { id: teamA.projectId }, as(token))).projectGpuQuotas;

  beforeAll(async () => {
    s3 = await startTestS3Server();
    kube = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 8 }] });
    t = await startTestPlatform({ config: { objectStore: s3.config, jobs: { dispatchIntervalMs: 300, localTrainerCommand: undefined } } });
    const kc = kubeConfigFor(kube);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    kubeconfigDir = mkdtempSync(path.join(tmpdir(), 'mariner-kubeconfig-'));
    writeFileSync(path.join(kubeconfigDir, 'config'), kc.exportConfig());

    teamA = await projectWithKey(t, 'quota-team-a', { role: 'OWNER', assignments: [{ namespace: NS, kueueQueueName: 'gpu' }] });
    teamB = await projectWithKey(t, 'quota-team-b', { role: 'OWNER', assignments: [{ namespace: 'team-b' }] });
    const register = `mutation($org: ID!, $name: String!) { registerCluster(input: { name: $name, organizationId: $org }) { registrationKey cluster { id } } }`;
    const { registerCluster } = await t.gqlOk(register, { org: teamA.organizationId, name: 'a-gpus' });
    clusterId = registerCluster.cluster.id;
    const other = (await t.gqlOk(register, { org: teamB.organizationId, name: 'b-gpus' })).registerCluster;
    [otherClusterId, otherClusterKey] = [other.cluster.id, other.registrationKey];
    // A project owner of team A's project who does not own its organization.
    memberKey = (
      await t.gqlOk(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`, {
        input: { name: 'project-owner', projectId: teamA.projectId, isServiceAccount: true, role: 'READER' },
      })
    ).createApiKey.secret;

    agentStore = await createObjectStore(s3.config);
    process.env['MARINER_RUNTIMES'] = 'off';
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'kubernetes',
      kubeconfig: path.join(kubeconfigDir, 'config'),
      objectStore: agentStore,
      jobs: { kubernetes: { pollIntervalMs: 100 } },
      logger: silentLogger(),
    });
    await agent.reportStatus();
  });

  afterAll(async () => {
    delete process.env['MARINER_RUNTIMES'];
    await agent?.close();
    await agentStore?.close();
    await t?.close();
    await kube?.close();
    await s3?.close();
    if (kubeconfigDir) rmSync(kubeconfigDir, { recursive: true, force: true });
  });

  it('refuses bad quotas with BAD_USER_INPUT and changes nothing', async () => {
    const bad = [
      [{ nominalGpus: -1 }, 'input.nominalGpus'],
      [{ clusterId: 'cluster-doesNotExist1' }, 'input.clusterId'],
      [{ clusterId: otherClusterId }, 'input.clusterId'], // another organization's cluster
      [{ resource: 'cpu' }, 'input.resource'],
      [{ flavor: 'Not A Label' }, 'input.flavor'],
    ] as const;
    for (const [change, field] of bad) {
      const result = await t.gql(SET, { input: { projectId: teamA.projectId, clusterId, nominalGpus: 2, ...change } }, as(teamA.key));
      expect(result.errors?.[0]?.extensions?.['code'], JSON.stringify(change)).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.extensions?.['field']).toBe(field);
    }
    // A project assigned elsewhere: the cluster is not one of its assignments.
    const elsewhere = (
      await t.gqlOk(
        `mutation($org: ID!) { createProject(input: { organizationId: $org, title: "pinned", assignments: [{ clusterId: "cluster-elsewhere1", namespace: "pinned" }] }) { id } }`,
        { org: teamA.organizationId },
        as(teamA.key),
      )
    ).createProject.id;
    const notAssigned = await t.gql(SET, { input: { projectId: elsewhere, clusterId, nominalGpus: 1 } }, as(teamA.key));
    expect(notAssigned.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
    expect(notAssigned.errors?.[0]?.message).toContain('not assigned');
    // Over REST: 400.
    expect((await rest('PUT', quotaPath(), teamA.key, { cluster_id: clusterId, nominal_gpus: -3 })).status).toBe(400);
    expect(await quotas()).toEqual([]);
  });

  it('only owners of the project’s organization set quotas: a project owner and another organization are refused', async () => {
    const input = { projectId: teamA.projectId, clusterId, nominalGpus: 100 };
    expect((await t.gql(SET, { input }, as(memberKey))).errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect((await t.gql(SET, { input }, as(teamB.key))).errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    const removal = await t.gql(
      `mutation($input: RemoveProjectGpuQuotaInput!) { removeProjectGpuQuota(input: $input) { removed } }`,
      { input: { projectId: teamA.projectId, clusterId } },
      as(teamB.key),
    );
    expect(removal.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    // Another organization cannot read them either (the project is not found for it), in GraphQL or REST.
    expect((await t.gql(QUOTAS, { id: teamA.projectId }, as(teamB.key))).errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    expect((await rest('GET', quotaPath(), teamB.key)).status).toBe(404);
    expect((await rest('PUT', quotaPath(), teamB.key, { cluster_id: clusterId, nominal_gpus: 100 })).status).toBe(404);
    // A cluster's registration key reads no project's quotas, and sets none.
    expect((await t.gql(QUOTAS, { id: teamA.projectId }, as(otherClusterKey))).errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect((await t.gql(SET, { input }, as(otherClusterKey))).errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect(await quotas()).toEqual([]);
  });

  it('sets a quota over REST; the agent makes its ClusterQueue and LocalQueue, and follows a change', async () => {
    const put = await rest('PUT', quotaPath(), teamA.key, { cluster_id: clusterId, nominal_gpus: 2 });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({
      project_id: teamA.projectId,
      cluster_id: clusterId,
      resource: 'nvidia.com/gpu',
      flavor: null,
      nominal_gpus: 2,
      borrowing_allowed: false,
      used_gpus: null,
    });

    await agent.reportStatus();
    const [queue] = kube.objects('ClusterQueue');
    expect(queue.metadata.name).toBe(clusterQueueName(teamA.projectId));
    expect(queue.spec.resourceGroups[0].flavors[0].resources).toEqual([{ name: 'nvidia.com/gpu', nominalQuota: '2' }]);
    expect(queue.spec.cohort).toBeUndefined();
    expect(kube.objects('LocalQueue', NS).map((q) => [q.metadata.name, q.spec.clusterQueue])).toEqual([['gpu', queue.metadata.name]]);

    // Borrowing allowed: the queue joins its organization's cohort.
    await t.gqlOk(SET, { input: { projectId: teamA.projectId, clusterId, nominalGpus: 2, borrowingAllowed: true } }, as(teamA.key));
    await agent.reportStatus();
    expect(kube.objects('ClusterQueue')[0].spec.cohort).toBe(cohortName(teamA.organizationId));
  });

  it('a job Kueue holds back shows as waiting for quota, with Kueue’s message, beside the GPUs in use', async () => {
    const batch = async (gpus: number) => {
      const response = await rest('POST', '/v1/batch/jobs', teamA.key, { image: 'pytorch-2.1', command: 'python train.py', resources: { gpu_count: gpus } });
      expect(response.status).toBe(200);
      return response.body.id as string;
    };
    const kubeJob = (id: string): Promise<any> =>
      waitFor(async () => kube.objects('Job', NS).find((j) => j.metadata.name === jobObjectName(id)), Boolean, 'the Kubernetes Job');
    const first = await batch(2);
    expect((await kubeJob(first)).spec.suspend).toBe(true);
    await playKueueAdmission(kubeConfigFor(kube));
    const second = await batch(1);
    expect((await kubeJob(second)).metadata.labels['kueue.x-k8s.io/queue-name']).toBe('gpu');
    await playKueueAdmission(kubeConfigFor(kube));

    await agent.reportStatus();
    const [quota] = await quotas(memberKey); // any member of the project reads them
    expect(quota.usedGpus).toBe(2);
    expect(quota.usageReportedAt).not.toBeNull();
    expect(quota.waitingJobs).toEqual([
      { jobId: second, namespace: NS, message: expect.stringContaining('insufficient unused quota for nvidia.com/gpu'), position: null },
    ]);
    const listed = await rest('GET', quotaPath(), memberKey);
    expect(listed.body.data[0]).toMatchObject({ used_gpus: 2, waiting_jobs: [{ job_id: second, namespace: NS }] });
    // The job itself says it waits for quota, and why; the admitted one does not.
    const JOB = `query($id: ID!) { batchJob(id: $id) { id status quotaWait { clusterId namespace message } } }`;
    const waiting = (await t.gqlOk(JOB, { id: second }, as(teamA.key))).batchJob;
    expect(waiting).toMatchObject({ status: 'QUEUED', quotaWait: { clusterId, namespace: NS, message: expect.stringContaining('insufficient unused quota') } });
    expect((await t.gqlOk(JOB, { id: first }, as(teamA.key))).batchJob.quotaWait).toBeNull();
    // Another organization sees no such job, and no wait.
    expect((await t.gql(JOB, { id: second }, as(teamB.key))).data?.batchJob ?? null).toBeNull();
    // The project's own view has them too.
    const project = await t.gqlOk(
      `query($id: ID!) { project(id: $id) { gpuQuotas { usedGpus waitingJobs { jobId } } } }`,
      { id: teamA.projectId },
      as(teamA.key),
    );
    expect(project.project.gpuQuotas[0].waitingJobs).toEqual([{ jobId: second }]);

    // Another organization's cluster cannot speak for team A's namespace: its report leaves team A's quota as it was.
    const forged = {
      usage: [{ namespace: NS, resource: 'nvidia.com/gpu', usedGpus: 0 }],
      waiting: [{ jobId: 'job-forged', namespace: NS, message: 'forged' }],
    };
    await t.gqlOk(`mutation($input: GpuQuotaReportInput!) { reportGpuQuotaStatus(input: $input) }`, { input: forged }, as(otherClusterKey));
    expect((await quotas())[0]).toMatchObject({ usedGpus: 2, waitingJobs: [{ jobId: second }] });

    // More quota: Kueue admits the waiting job, and the report says so.
    await t.gqlOk(SET, { input: { projectId: teamA.projectId, clusterId, nominalGpus: 3 } }, as(teamA.key));
    await agent.reportStatus();
    await playKueueAdmission(kubeConfigFor(kube));
    await agent.reportStatus();
    const [after] = await quotas();
    expect(after).toMatchObject({ nominalGpus: 3, usedGpus: 3, waitingJobs: [] });
    expect((await t.gqlOk(JOB, { id: second }, as(teamA.key))).batchJob.quotaWait).toBeNull();
    for (const id of [first, second]) await rest('POST', `/v1/batch/jobs/${id}/cancel`, teamA.key);
  });

  it('removing the quota removes its queues from the cluster', async () => {
    const removed = await rest('DELETE', `${quotaPath()}?cluster_id=${clusterId}`, teamA.key);
    expect(removed).toEqual({ status: 200, body: { removed: true } });
    await agent.reportStatus();
    expect(kube.objects('ClusterQueue')).toEqual([]);
    expect(kube.objects('LocalQueue', NS)).toEqual([]);
    expect(await quotas()).toEqual([]);
  });
});
