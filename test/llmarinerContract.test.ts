import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageStore, type UsageRecord } from '../subgraphs/inference/store.js';
import { expectConforms, loadSwaggerValidator } from './support/llmarinerSwagger.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';

/**
 * LLMariner's clients (`llma`, scripts and dashboards written against its REST API) against Mariner: each
 * LLMariner route through the real platform, its answer validated against LLMariner's published swagger
 * (test/fixtures/llmariner, with its license), and no organization seeing another's keys, usage or clusters.
 */

const fixture = (name: string) => new URL(`./fixtures/llmariner/${name}`, import.meta.url);
const userManager = loadSwaggerValidator(fixture('user-manager.user_manager_service.swagger.json'));
const apiUsage = loadSwaggerValidator(fixture('api-usage.usage_server.swagger.json'), { requireAll: true });
const jobManager = loadSwaggerValidator(fixture('job-manager.job_manager_server.swagger.json'), { requireAll: true });
const inferenceManager = loadSwaggerValidator(fixture('inference-manager.inference_server_management.swagger.json'), { requireAll: true });
// /v1/models is an OpenAI route: Mariner's own extra fields (`adapter`) are allowed there.
const modelManager = loadSwaggerValidator(fixture('model-manager.model_manager_service.swagger.json'), { strict: false });

let t: TestPlatform;
let orgA: Awaited<ReturnType<typeof projectWithKey>>;
let orgB: Awaited<ReturnType<typeof projectWithKey>>;
/** A project owner (organization READER) in org A: no `api.clusters.read`. */
let readerA: string;

async function rest(token: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

beforeAll(async () => {
  t = await startTestPlatform();
  orgA = await projectWithKey(t, 'contract-a', { role: 'OWNER' });
  orgB = await projectWithKey(t, 'contract-b', { role: 'OWNER' });
  const { createApiKey } = await t.gqlOk(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`, {
    input: { name: 'a-reader', projectId: orgA.projectId, isServiceAccount: true, role: 'READER' },
  });
  readerA = createApiKey.secret;
});
afterAll(async () => {
  await t?.close();
});

describe("the swagger check itself (LLMariner's JSON: proto names, int64 strings, enum names)", () => {
  it('rejects the shapes Mariner answered before: camelCase or short field names, short enum names, counts that are not int64', () => {
    const summaries = (values: Record<string, unknown>) => ({ datapoints: [{ timestamp: '0', values: [values] }] });
    const full = { model_id: 'm', total_requests: '1', total_prompt_tokens: '2', total_completion_tokens: '3' };
    expect(apiUsage.validateResponse('GET', '/v1/api-usage/model-usage-summaries', summaries(full))).toEqual([]);
    expect(apiUsage.validateResponse('GET', '/v1/api-usage/model-usage-summaries', summaries({ ...full, total_requests: 'many' }))).not.toEqual([]);
    const { model_id: _, ...camel } = full;
    expect(apiUsage.validateResponse('GET', '/v1/api-usage/model-usage-summaries', summaries({ ...camel, modelId: 'm' }))).not.toEqual([]);
    const oldJobs = { job_type: 'BATCH', total_created: 1, completed: 0, failed: 0, cancelled: 0, running: 0, queued: 0, unfinished: 0 };
    expect(jobManager.validateResponse('GET', '/v1/jobs/summaries', summaries(oldJobs))).not.toEqual([]);
  });
});

describe('LLMariner API keys under /v1/organizations/{organization_id}/projects/{project_id}/api_keys (llma auth api-keys)', () => {
  const path = () => `/v1/organizations/${orgA.organizationId}/projects/${orgA.projectId}/api_keys`;

  it('creates a key (the full secret once), lists it obfuscated, deletes it, and the deleted key stops working', async () => {
    const created = await rest(orgA.key, 'POST', path(), { name: 'ci-key' });
    expect(created.status).toBe(200);
    expectConforms(userManager.validateResponse('POST', '/v1/organizations/{organizationId}/projects/{projectId}/api_keys', created.body), 'create');
    expect(created.body).toMatchObject({ object: 'user.api_key', name: 'ci-key', project: { id: orgA.projectId }, organization: { id: orgA.organizationId } });
    expect(created.body.secret).toMatch(/^sk-/);
    expect((await rest(created.body.secret, 'GET', '/v1/models')).status).toBe(200);

    const listed = await rest(orgA.key, 'GET', path());
    expect(listed.status).toBe(200);
    expectConforms(userManager.validateResponse('GET', '/v1/organizations/{organizationId}/projects/{projectId}/api_keys', listed.body), 'list');
    const mine = listed.body.data.find((k: { id: string }) => k.id === created.body.id);
    expect(mine.secret).not.toBe(created.body.secret);
    expect(listed.body.data.every((k: { project: { id: string } }) => k.project.id === orgA.projectId)).toBe(true);

    const deleted = await rest(orgA.key, 'DELETE', `${path()}/${created.body.id}`);
    expect(deleted).toMatchObject({ status: 200, body: { id: created.body.id, deleted: true } });
    expectConforms(userManager.validateResponse('DELETE', '/v1/organizations/{organizationId}/projects/{projectId}/api_keys/{id}', deleted.body), 'delete');
    expect((await rest(created.body.secret, 'GET', '/v1/models')).status).toBe(401);
  });

  it("another organization can neither list, create nor delete keys in this organization's project", async () => {
    const victim = await rest(orgA.key, 'POST', path(), { name: 'victim-key' });
    expect(victim.status).toBe(200);
    const listed = await rest(orgB.key, 'GET', path());
    expect([403, 404]).toContain(listed.status);
    expect(JSON.stringify(listed.body)).not.toContain(victim.body.id);
    expect([403, 404]).toContain((await rest(orgB.key, 'POST', path(), { name: 'intruder' })).status);
    expect([403, 404]).toContain((await rest(orgB.key, 'DELETE', `${path()}/${victim.body.id}`)).status);
    // A key of B's own project named under A's organization is not found there either.
    const mixed = await rest(orgB.key, 'GET', `/v1/organizations/${orgA.organizationId}/projects/${orgB.projectId}/api_keys`);
    expect([403, 404]).toContain(mixed.status);
    // Nothing changed: A's key still works and is still listed.
    expect((await rest(victim.body.secret, 'GET', '/v1/models')).status).toBe(200);
    const again = await rest(orgA.key, 'GET', path());
    expect(again.body.data.map((k: { id: string }) => k.id)).toContain(victim.body.id);
    // Through its own project, B cannot reach A's key by id either.
    const viaOwn = await rest(orgB.key, 'DELETE', `/v1/organizations/${orgB.organizationId}/projects/${orgB.projectId}/api_keys/${victim.body.id}`);
    expect(viaOwn.status).toBe(404);
    expect((await rest(victim.body.secret, 'GET', '/v1/models')).status).toBe(200);
  });

  it('a key without a name is refused in the OpenAI error shape, and nothing is created', async () => {
    const before = (await rest(orgA.key, 'GET', path())).body.data.length;
    const bad = await rest(orgA.key, 'POST', path(), { is_service_account: false });
    expect(bad).toMatchObject({ status: 400, body: { error: { param: 'name', type: 'invalid_request_error' } } });
    expect((await rest(orgA.key, 'GET', path())).body.data).toHaveLength(before);
  });
});

describe('LLMariner GET /v1/api-usage/model-usage-summaries', () => {
  const HOUR = 3600;
  let start: number;

  beforeAll(async () => {
    // A generated history in the usage records the inference component writes: org A's project over
    // three hours, and org B's requests in the same hours (never to show in A's answer).
    const tenant = (await t.platform.db.knex.withSchema('users').table('projects').where({ id: orgA.projectId }).first('tenant_id')) as { tenant_id: string };
    start = Math.floor(Date.now() / 1000 / HOUR) * HOUR - 3 * HOUR;
    const record = (org: typeof orgA, model: string, hour: number, minute: number, status: number, prompt: number, completion: number): UsageRecord => ({
      tenant_id: tenant.tenant_id,
      organization_id: org.organizationId,
      project_id: org.projectId,
      user_id: 'user-contract',
      api_key_id: null,
      model_id: model,
      api_method: '/v1/chat/completions',
      status_code: status,
      prompt_tokens: prompt,
      completion_tokens: completion,
      time_to_first_token_ms: 5,
      latency_ms: 20,
      created_at: new Date((start + hour * HOUR + minute * 60) * 1000),
    });
    await new UsageStore(t.platform.db.knex).insert([
      record(orgA, 'llama', 0, 1, 200, 10, 5),
      record(orgA, 'llama', 0, 59, 200, 20, 7),
      record(orgA, 'qwen', 0, 30, 429, 0, 0),
      record(orgA, 'qwen', 2, 0, 200, 3, 4),
      record(orgB, 'secret-model', 0, 10, 200, 1000, 1000),
      record(orgB, 'llama', 1, 10, 200, 1000, 1000),
    ]);
  });

  it('answers hourly buckets with every model in each, totals per bucket, in LLMariner JSON', async () => {
    const { status, body } = await rest(
      orgA.key,
      'GET',
      `/v1/api-usage/model-usage-summaries?filter.start_timestamp=${start}&filter.end_timestamp=${start + 3 * HOUR}`,
    );
    expect(status).toBe(200);
    expectConforms(apiUsage.validateResponse('GET', '/v1/api-usage/model-usage-summaries', body), 'model usage summaries');
    expect(body).toEqual({
      datapoints: [
        {
          timestamp: String(start),
          values: [
            { model_id: 'llama', total_requests: '2', total_prompt_tokens: '30', total_completion_tokens: '12' },
            { model_id: 'qwen', total_requests: '1', total_prompt_tokens: '0', total_completion_tokens: '0' },
          ],
        },
        {
          timestamp: String(start + HOUR),
          values: [
            { model_id: 'llama', total_requests: '0', total_prompt_tokens: '0', total_completion_tokens: '0' },
            { model_id: 'qwen', total_requests: '0', total_prompt_tokens: '0', total_completion_tokens: '0' },
          ],
        },
        {
          timestamp: String(start + 2 * HOUR),
          values: [
            { model_id: 'llama', total_requests: '0', total_prompt_tokens: '0', total_completion_tokens: '0' },
            { model_id: 'qwen', total_requests: '1', total_prompt_tokens: '3', total_completion_tokens: '4' },
          ],
        },
      ],
    });
  });

  it('filters by status code and aggregates over a wider interval (interval_sec, and the camelCase names grpc-gateway also reads)', async () => {
    const { body } = await rest(
      orgA.key,
      'GET',
      `/v1/api-usage/model-usage-summaries?filter.startTimestamp=${start}&filter.endTimestamp=${start + 3 * HOUR}&intervalSec=${3 * HOUR}&filter.status_code=200`,
    );
    expect(body.datapoints).toEqual([
      {
        timestamp: String(start),
        values: [
          { model_id: 'llama', total_requests: '2', total_prompt_tokens: '30', total_completion_tokens: '12' },
          { model_id: 'qwen', total_requests: '1', total_prompt_tokens: '3', total_completion_tokens: '4' },
        ],
      },
    ]);
  });

  it("another organization's usage never shows; bad parameters are refused naming the parameter", async () => {
    const { body } = await rest(
      orgB.key,
      'GET',
      `/v1/api-usage/model-usage-summaries?filter.start_timestamp=${start}&filter.end_timestamp=${start + 3 * HOUR}`,
    );
    const models = new Set(body.datapoints.flatMap((p: { values: { model_id: string }[] }) => p.values.map((v) => v.model_id)));
    expect([...models].sort()).toEqual(['llama', 'secret-model']);
    const bTotal = body.datapoints
      .flatMap((p: { values: { total_prompt_tokens: string }[] }) => p.values)
      .reduce((n: number, v: { total_prompt_tokens: string }) => n + Number(v.total_prompt_tokens), 0);
    expect(bTotal).toBe(2000);

    expect(await rest(orgA.key, 'GET', '/v1/api-usage/model-usage-summaries?interval_sec=10')).toMatchObject({
      status: 400,
      body: { error: { param: 'interval_sec' } },
    });
    expect(await rest(orgA.key, 'GET', '/v1/api-usage/model-usage-summaries?filter.start_timestamp=yesterday')).toMatchObject({
      status: 400,
      body: { error: { param: 'filter.start_timestamp' } },
    });
    expect(await rest(orgA.key, 'GET', `/v1/api-usage/model-usage-summaries?filter.start_timestamp=${start}&filter.end_timestamp=${start}`)).toMatchObject({
      status: 400,
      body: { error: { param: 'filter.start_timestamp' } },
    });
  });
});

describe('LLMariner GET /v1/jobs/summaries', () => {
  it('answers job-manager ListJobSummariesResponse: total_* counts as int64 strings and JOB_TYPE_* names', async () => {
    const now = Math.floor(Date.now() / 1000);
    const { status, body } = await rest(
      orgA.key,
      'GET',
      `/v1/jobs/summaries?filter.start_timestamp=${now - 7200}&filter.end_timestamp=${now}&filter.duration=3600s`,
    );
    expect(status).toBe(200);
    expectConforms(jobManager.validateResponse('GET', '/v1/jobs/summaries', body), 'job summaries');
    expect(body.datapoints).toHaveLength(2);
    expect(body.datapoints[0].values.map((v: { job_type: string }) => v.job_type).sort()).toEqual([
      'JOB_TYPE_BATCH',
      'JOB_TYPE_FINE_TUNING',
      'JOB_TYPE_NOTEBOOK',
    ]);
    expect(body.datapoints[0].values[0]).toMatchObject({ total_deleted: '0', total_stopped: '0', total_completed: '0' });
  });
});

const REGISTER = `mutation($name: String!) { registerCluster(input: { name: $name }) { registrationKey cluster { id name } } }`;
const REPORT_STATUS = `mutation($input: ClusterStatusInput!) { reportClusterStatus(input: $input) { gpuCapacity } }`;
const REPORT_RUNTIMES = `mutation($runtimes: [RuntimeReportInput!]!) { reportRuntimes(runtimes: $runtimes) { modelId } }`;

describe('LLMariner cluster views: /v1/inference/status and /v1/clustertelemetry/*', () => {
  let clusterA: { id: string; key: string };
  let adapterId: string;

  beforeAll(async () => {
    // Org A registers its own cluster; its agent reports nodes, GPU pods and a runtime of A's model.
    const { registerCluster } = await t.gqlOk(REGISTER, { name: 'a-gpu' }, { token: orgA.key });
    clusterA = { id: registerCluster.cluster.id, key: registerCluster.registrationKey };
    const { registerCluster: b } = await t.gqlOk(REGISTER, { name: 'b-gpu' }, { token: orgB.key });
    const node = (name: string, gpus: number, product: string) => ({
      name,
      ready: true,
      gpuCapacity: gpus,
      gpuAllocatable: gpus,
      gpuProduct: product,
      cpuCores: 32,
      memoryBytes: 128 * 2 ** 30,
    });
    await t.gqlOk(
      REPORT_STATUS,
      {
        input: {
          nodes: [node('a-node-1', 4, 'NVIDIA-H100-80GB-HBM3'), node('a-node-2', 2, 'NVIDIA-L4')],
          gpuPods: [{ namespace: 'a-ns', name: 'runtime-0', gpus: 2, phase: 'Running' }],
        },
      },
      { token: clusterA.key },
    );
    await t.gqlOk(REPORT_STATUS, { input: { nodes: [node('b-node-1', 8, 'NVIDIA-B200')], gpuPods: [] } }, { token: b.registrationKey });

    // A base model of the tenant's catalog (platform admins make those), which A's cluster may run.
    const created = await rest(t.adminKey, 'POST', '/v1/models', {
      id: 'a-status-model',
      source_repository: 'SOURCE_REPOSITORY_OLLAMA',
      is_project_scoped: false,
      config: { runtime_config: { resources: { gpu: 2 }, replicas: 2 } },
    });
    expect(created.status).toBe(200);
    await t.gqlOk(
      REPORT_RUNTIMES,
      { runtimes: [{ modelId: 'a-status-model', desiredReplicas: 2, readyReplicas: 1, inFlightRequests: 3 }] },
      { token: clusterA.key },
    );

    // Org A's LoRA adapter of that model (PEFT weights, as a fine-tuning job leaves them): active at once,
    // served on the base model's runtime.
    for (const name of ['adapter_config.json', 'adapter_model.safetensors']) {
      await t.platform.objectStore.put(`contract-uploads/lora/${name}`, Readable.from([Buffer.from('{}')]));
    }
    const adapter = await rest(orgA.key, 'POST', '/v1/models', {
      is_fine_tuned_model: true,
      base_model_id: 'a-status-model',
      suffix: 'lora',
      model_file_location: t.platform.objectStore.uri('contract-uploads/lora'),
    });
    expect(adapter.body).toMatchObject({ adapter: { base_model_id: 'a-status-model' } });
    adapterId = adapter.body.id;
  });

  it("/v1/inference/status: the cluster's name, an engine that is not the cluster, the model's GPUs", async () => {
    const { status, body } = await rest(orgA.key, 'GET', '/v1/inference/status');
    expect(status).toBe(200);
    expectConforms(inferenceManager.validateResponse('GET', '/v1/inference/status', body), 'inference status');
    const cluster = body.cluster_statuses.find((c: { id: string }) => c.id === clusterA.id);
    expect(cluster).toMatchObject({ name: 'a-gpu', model_count: 2, in_progress_task_count: 3, gpu_allocated: 4 });
    const [engine] = cluster.engine_statuses;
    expect(engine.engine_id).not.toBe(clusterA.id);
    expect(engine).toMatchObject({ cluster_id: clusterA.id, ready: true });
    expect(engine.models).toEqual([
      {
        id: 'a-status-model',
        is_ready: true,
        in_progress_task_count: 3,
        gpu_allocated: 4,
        is_dynamically_loaded_lora: false,
        status_details: { num_ready_pods: 1, num_total_pods: 2, status_message: '' },
      },
      {
        id: adapterId,
        is_ready: true,
        in_progress_task_count: 0,
        gpu_allocated: 0,
        is_dynamically_loaded_lora: true,
        status_details: { num_ready_pods: 1, num_total_pods: 2, status_message: '' },
      },
    ]);
    expect(body.task_status.in_progress_task_counts).toEqual({ 'a-status-model': 3 });
    // A project owner without the clusters scope still gets the cluster's name.
    const reader = await rest(readerA, 'GET', '/v1/inference/status');
    expect(reader.status).toBe(200);
    expect(reader.body.cluster_statuses.map((c: { id: string }) => c.id)).toContain(clusterA.id);
    // Org B sees neither A's cluster nor A's model.
    const other = await rest(orgB.key, 'GET', '/v1/inference/status');
    expect(JSON.stringify(other.body)).not.toContain(clusterA.id);
    expect(JSON.stringify(other.body)).not.toContain('a-status-model');
    expect(JSON.stringify(other.body)).not.toContain(adapterId);
  });

  it('/v1/clustertelemetry/clustersnapshots: the latest report in its hourly bucket, grouped as asked', async () => {
    const all = await rest(orgA.key, 'GET', '/v1/clustertelemetry/clustersnapshots');
    expect(all.status).toBe(200);
    expect(all.body.datapoints).toHaveLength(24);
    expect(all.body.datapoints.every((p: { timestamp: unknown }) => typeof p.timestamp === 'string')).toBe(true);
    expect(all.body.datapoints.at(-1).values).toEqual([{ grouping_value: '', node_count: 2, gpu_capacity: 6, memory_capacity_gb: 0 }]);
    expect(all.body.datapoints[0].values).toEqual([{ grouping_value: '', node_count: 0, gpu_capacity: 0, memory_capacity_gb: 0 }]);

    const byCluster = await rest(orgA.key, 'GET', '/v1/clustertelemetry/clustersnapshots?group_by=GROUP_BY_CLUSTER');
    expect(byCluster.body.datapoints.at(-1).values).toEqual([{ grouping_value: 'a-gpu', node_count: 2, gpu_capacity: 6, memory_capacity_gb: 0 }]);
    const byProduct = await rest(orgA.key, 'GET', '/v1/clustertelemetry/clustersnapshots?group_by=2');
    expect(byProduct.body.datapoints.at(-1).values).toEqual([
      { grouping_value: 'NVIDIA-H100-80GB-HBM3', node_count: 1, gpu_capacity: 4, memory_capacity_gb: 0 },
      { grouping_value: 'NVIDIA-L4', node_count: 1, gpu_capacity: 2, memory_capacity_gb: 0 },
    ]);
    expect(await rest(orgA.key, 'GET', '/v1/clustertelemetry/clustersnapshots?group_by=GROUP_BY_COLOUR')).toMatchObject({
      status: 400,
      body: { error: { param: 'group_by' } },
    });
  });

  it('/v1/clustertelemetry/gpu-usages: allocation only (no DCGM), per cluster', async () => {
    const { status, body } = await rest(orgA.key, 'GET', '/v1/clustertelemetry/gpu-usages');
    expect(status).toBe(200);
    expect(body.datapoints).toHaveLength(24);
    expect(body.datapoints.at(-1).values).toEqual([
      { cluster_name: 'a-gpu', node_name: '', max_gpu_used: 200, avg_gpu_used: 200, max_gpu_memory_used_gb: 0, avg_gpu_memory_used_gb: 0 },
    ]);
    expect(body.datapoints[0].values[0]).toMatchObject({ cluster_name: 'a-gpu', max_gpu_used: 0 });
  });

  it("another organization's clusters never show, and a caller without the clusters scope is refused", async () => {
    for (const path of ['/v1/clustertelemetry/clustersnapshots?group_by=GROUP_BY_CLUSTER', '/v1/clustertelemetry/gpu-usages']) {
      const b = await rest(orgB.key, 'GET', path);
      expect(b.status).toBe(200);
      expect(JSON.stringify(b.body)).not.toContain('a-gpu');
      expect(JSON.stringify(b.body)).toContain('b-gpu');
      const a = await rest(orgA.key, 'GET', path);
      expect(JSON.stringify(a.body)).not.toContain('b-gpu');
      expect((await rest(readerA, 'GET', path)).status).toBe(403);
    }
  });
});

/**
 * How `llma models list` reads the answer: grpc-gateway's JSONPb over protojson with DiscardUnknown
 * (llmariner cli/internal/http/http.go) into model-manager's Go types (api/v1 ListModelsResponse, Model,
 * ModelConfig). protojson takes a field by its proto or JSON name, drops unknown fields and, with
 * DiscardUnknown, unknown enum names (the field keeps its zero value), takes an int64 as a number or a
 * string, and fails on a value of the wrong JSON type.
 */
type FieldKind = 'string' | 'bool' | 'int32' | 'int64' | { enum: string[] } | { message: GoMessage };
interface GoField {
  proto: string;
  kind: FieldKind;
  repeated?: boolean;
}
type GoMessage = Record<string, GoField>;

const enumOf = (...values: string[]): FieldKind => ({ enum: values });
const GO_MODEL_CONFIG: GoMessage = {
  RuntimeConfig: {
    proto: 'runtime_config',
    kind: {
      message: {
        Resources: { proto: 'resources', kind: { message: { Gpu: { proto: 'gpu', kind: 'int32' } } } },
        Replicas: { proto: 'replicas', kind: 'int32' },
        ExtraArgs: { proto: 'extra_args', kind: 'string', repeated: true },
      },
    },
  },
  ClusterAllocationPolicy: {
    proto: 'cluster_allocation_policy',
    kind: {
      message: {
        AllowedClusterIds: { proto: 'allowed_cluster_ids', kind: 'string', repeated: true },
        EnableOnDemandAllocation: { proto: 'enable_on_demand_allocation', kind: 'bool' },
      },
    },
  },
};
const GO_MODEL: GoMessage = {
  Id: { proto: 'id', kind: 'string' },
  Created: { proto: 'created', kind: 'int64' },
  Object: { proto: 'object', kind: 'string' },
  OwnedBy: { proto: 'owned_by', kind: 'string' },
  LoadingStatus: {
    proto: 'loading_status',
    kind: enumOf(
      'MODEL_LOADING_STATUS_UNSPECIFIED',
      'MODEL_LOADING_STATUS_REQUESTED',
      'MODEL_LOADING_STATUS_LOADING',
      'MODEL_LOADING_STATUS_SUCCEEDED',
      'MODEL_LOADING_STATUS_FAILED',
    ),
  },
  SourceRepository: {
    proto: 'source_repository',
    kind: enumOf(
      'SOURCE_REPOSITORY_UNSPECIFIED',
      'SOURCE_REPOSITORY_OBJECT_STORE',
      'SOURCE_REPOSITORY_HUGGING_FACE',
      'SOURCE_REPOSITORY_OLLAMA',
      'SOURCE_REPOSITORY_FINE_TUNING',
    ),
  },
  LoadingFailureReason: { proto: 'loading_failure_reason', kind: 'string' },
  LoadingStatusMessage: { proto: 'loading_status_message', kind: 'string' },
  Formats: {
    proto: 'formats',
    kind: enumOf('MODEL_FORMAT_UNSPECIFIED', 'MODEL_FORMAT_GGUF', 'MODEL_FORMAT_HUGGING_FACE', 'MODEL_FORMAT_NVIDIA_TRITON', 'MODEL_FORMAT_OLLAMA'),
    repeated: true,
  },
  IsBaseModel: { proto: 'is_base_model', kind: 'bool' },
  BaseModelId: { proto: 'base_model_id', kind: 'string' },
  ActivationStatus: { proto: 'activation_status', kind: enumOf('ACTIVATION_STATUS_UNSPECIFIED', 'ACTIVATION_STATUS_ACTIVE', 'ACTIVATION_STATUS_INACTIVE') },
  Config: { proto: 'config', kind: { message: GO_MODEL_CONFIG } },
};
const GO_LIST_MODELS_RESPONSE: GoMessage = {
  Object: { proto: 'object', kind: 'string' },
  Data: { proto: 'data', kind: { message: GO_MODEL }, repeated: true },
  HasMore: { proto: 'has_more', kind: 'bool' },
  TotalItems: { proto: 'total_items', kind: 'int32' },
};

const jsonName = (proto: string) => proto.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function decodeScalar(kind: FieldKind, value: unknown, where: string): unknown {
  if (typeof kind === 'object' && 'message' in kind) return decodeMessage(kind.message, value, where);
  if (typeof kind === 'object') {
    if (typeof value === 'number') return kind.enum[value] ?? value;
    if (typeof value !== 'string') throw new Error(`${where}: invalid value for enum field: ${JSON.stringify(value)}`);
    return kind.enum.includes(value) ? value : undefined; // DiscardUnknown: an unknown name is dropped
  }
  switch (kind) {
    case 'string':
      if (typeof value !== 'string') throw new Error(`${where}: invalid value for string field: ${JSON.stringify(value)}`);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw new Error(`${where}: invalid value for bool field: ${JSON.stringify(value)}`);
      return value;
    case 'int32':
    case 'int64': {
      const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw new Error(`${where}: invalid value for ${kind} field: ${JSON.stringify(value)}`);
      return n;
    }
  }
}

function decodeMessage(message: GoMessage, value: unknown, where = '$'): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected an object`);
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(value)) {
    const entry = Object.entries(message).find(([, f]) => f.proto === key || jsonName(f.proto) === key);
    if (!entry || raw === null) continue; // unknown fields are discarded; null is the default value
    const [goName, field] = entry;
    if (field.repeated) {
      if (!Array.isArray(raw)) throw new Error(`${where}.${key}: expected a list`);
      out[goName] = raw.map((item, i) => decodeScalar(field.kind, item, `${where}.${key}[${i}]`)).filter((v) => v !== undefined);
    } else {
      const decoded = decodeScalar(field.kind, raw, `${where}.${key}`);
      if (decoded !== undefined) out[goName] = decoded;
    }
  }
  return out;
}

describe("llma's Go decoding of GET /v1/models (protojson into model-manager's types)", () => {
  it('decodes every model with the enum values LLMariner names, where the short names would be lost', async () => {
    await rest(t.adminKey, 'POST', '/v1/models', {
      id: 'org/decoded-model',
      source_repository: 'HUGGING_FACE',
      config: { runtime_config: { resources: { gpu: 1 } } },
    });
    const { status, body } = await rest(t.adminKey, 'GET', '/v1/models?include_loading_models=true');
    expect(status).toBe(200);
    expectConforms(modelManager.validateResponse('GET', '/v1/models', body), 'models list');

    const decoded = decodeMessage(GO_LIST_MODELS_RESPONSE, body) as { Data: Record<string, unknown>[] };
    const model = decoded.Data.find((m) => m['Id'] === 'org-decoded-model')!;
    expect(model).toMatchObject({
      Object: 'model',
      LoadingStatus: 'MODEL_LOADING_STATUS_REQUESTED',
      SourceRepository: 'SOURCE_REPOSITORY_HUGGING_FACE',
      ActivationStatus: 'ACTIVATION_STATUS_INACTIVE',
      Formats: ['MODEL_FORMAT_HUGGING_FACE'],
      IsBaseModel: true,
      Config: { RuntimeConfig: { Resources: { Gpu: 1 } } },
    });
    expect(typeof model['Created']).toBe('number');
    // The short forms Mariner sent before are unknown enum names to llma: dropped, the status unset.
    const short = decodeMessage(GO_MODEL, { ...body.data.find((m: { id: string }) => m.id === 'org-decoded-model'), loading_status: 'REQUESTED' });
    expect(short['LoadingStatus']).toBeUndefined();
  });
});

describe('docs/llmariner.md: every LLMariner route it marks served is served', () => {
  it('answers each one with something other than "Invalid URL"', async () => {
    const page = readFileSync(new URL('../docs/llmariner.md', import.meta.url), 'utf8');
    const rows = [...page.matchAll(/^\|\s*(GET|POST|PATCH|DELETE)\s*\|\s*(\/v1\/\S+)\s*\|[^|]+\|\s*(served|not served)[^|]*\|$/gm)].map(
      ([, method, route, state]) => ({
        method: method!,
        route: route!,
        served: state === 'served',
      }),
    );
    expect(rows.length).toBeGreaterThan(80);
    const unserved: string[] = [];
    for (const { method, route, served } of rows) {
      const path = route.replace(/\{[^}]+\}/g, 'unknown-id');
      const response = await fetch(`${t.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        ...(method === 'GET' || method === 'DELETE' ? {} : { body: '{}' }),
      });
      const text = await response.text();
      const answered = !(response.status === 404 && text.includes('Invalid URL'));
      if (answered !== served) unserved.push(`${method} ${route}: ${served ? 'marked served, not routed' : 'marked not served, routed'}`);
    }
    expect(unserved).toEqual([]);
  });
});
