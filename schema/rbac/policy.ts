import { rule } from 'graphql-shield';
import { forbidden, unauthenticated } from '../../lib/errors.js';
import { anyOf, hasScope, isAuthenticated, isGatewaySystem, isInternalCaller, inProject, isWorker, type RuleContext, type Rule } from './rules.js';

/**
 * The RBAC policy map: `Type -> field -> rule` ('*' covers every field of a type). Deny by default:
 * a field with no entry is refused, and test/rbacCoverage.test.ts fails if any supergraph field
 * lacks one. The gateway evaluates it for every field of an operation before calling a subgraph;
 * each subgraph applies it again with graphql-shield (fallbackRule: deny). Ownership of individual
 * records (which organization, which project) is checked by the subgraphs' resolvers.
 */
export type PolicyMap = Record<string, Record<string, Rule>>;

/** Federation plumbing every subgraph serves; only the gateway (internal token) may call it. */
const federation: PolicyMap = {
  Query: { _service: isInternalCaller, _entities: isInternalCaller },
  _Service: { '*': isInternalCaller },
};

/** @shareable types several subgraphs define. */
const shared: PolicyMap = {
  DeletePayload: { '*': isAuthenticated },
};

/**
 * Owners of the organization of the project named by `projectId` / `input.projectId` (GPU quotas, issue 22):
 * refused here for everyone else; the resolver checks the project again against the database.
 */
const ownsProjectOrganization = rule({ cache: 'contextual' })((_parent, args: { projectId?: string; input?: { projectId?: string } }, ctx: RuleContext) => {
  if (!ctx.identity) return ctx.worker ? forbidden('A registration key may only call the worker API') : unauthenticated();
  const projectId = args.projectId ?? args.input?.projectId;
  const project = ctx.identity.principal.projects.find((p) => p.projectId === projectId);
  const owner = project && ctx.identity.principal.organizations.some((o) => o.organizationId === project.organizationId && o.role === 'OWNER');
  return owner || forbidden(`only owners of the project's organization can change its GPU quotas`);
});

const users: PolicyMap = {
  Query: {
    workerNamespaces: isWorker,
    workerGpuQuotas: isWorker,
    projectGpuQuotas: isAuthenticated,
    self: isAuthenticated,
    organizations: isAuthenticated,
    organization: isAuthenticated,
    projects: isAuthenticated,
    project: isAuthenticated,
    apiKeys: inProject,
    users: isAuthenticated,
    principalByApiKey: isGatewaySystem,
    principalByEmail: isGatewaySystem,
  },
  Mutation: {
    // LLMariner §9: `api.organizations*` is authorized without a project; the resolvers check
    // ownership of the organization or project concerned.
    createOrganization: isAuthenticated,
    deleteOrganization: isAuthenticated,
    addOrganizationMember: isAuthenticated,
    removeOrganizationMember: isAuthenticated,
    createProject: isAuthenticated,
    updateProject: isAuthenticated,
    deleteProject: isAuthenticated,
    addProjectMember: isAuthenticated,
    removeProjectMember: isAuthenticated,
    setProjectGpuQuota: ownsProjectOrganization,
    removeProjectGpuQuota: ownsProjectOrganization,
    reportGpuQuotaStatus: isWorker,
    createApiKey: isAuthenticated,
    updateApiKey: isAuthenticated,
    deleteApiKey: isAuthenticated,
  },
  Organization: { '*': isAuthenticated },
  OrganizationSummary: { '*': isAuthenticated },
  Project: { '*': isAuthenticated },
  ProjectSummary: { '*': isAuthenticated },
  ProjectAssignment: { '*': isAuthenticated },
  ProjectGpuQuota: { '*': isAuthenticated },
  GpuQuotaWaitingJob: { '*': isAuthenticated },
  RemoveProjectGpuQuotaPayload: { '*': isAuthenticated },
  WorkerGpuQuota: { '*': isWorker },
  // Jobs' waits for quota, served beside the jobs subgraph's fields: the same scopes as the jobs.
  BatchJob: { id: hasScope('api.batch.jobs', 'read'), quotaWait: hasScope('api.batch.jobs', 'read') },
  FineTuningJob: { id: hasScope('api.fine_tuning.jobs', 'read'), quotaWait: hasScope('api.fine_tuning.jobs', 'read') },
  GpuQuotaWait: { '*': isAuthenticated },
  NodeSelectorTerm: { '*': isAuthenticated },
  User: { '*': isAuthenticated },
  OrganizationRoleBinding: { '*': isAuthenticated },
  ProjectRoleBinding: { '*': isAuthenticated },
  OrganizationMember: { '*': isAuthenticated },
  ProjectMember: { '*': isAuthenticated },
  ApiKey: { '*': isAuthenticated },
  OrganizationPage: { '*': isAuthenticated },
  ProjectPage: { '*': isAuthenticated },
  OrganizationMemberPage: { '*': isAuthenticated },
  ProjectMemberPage: { '*': isAuthenticated },
  ApiKeyPage: { '*': isAuthenticated },
  UserPage: { '*': isAuthenticated },
  CreateApiKeyPayload: { '*': isAuthenticated },
  Principal: { '*': isGatewaySystem },
  PrincipalApiKey: { '*': isGatewaySystem },
  PrincipalOrganization: { '*': isGatewaySystem },
  PrincipalProject: { '*': isGatewaySystem },
};

const rbac: PolicyMap = {
  Query: { roleScopes: isAuthenticated, authorize: isAuthenticated },
  RoleScopes: { '*': isAuthenticated },
  Authorization: { '*': isAuthenticated },
  Project: { id: isAuthenticated },
};

const filesRead = hasScope('api.files', 'read');
const filesWrite = hasScope('api.files', 'write');
const files: PolicyMap = {
  Query: { files: filesRead, file: filesRead },
  Mutation: {
    beginFileUpload: filesWrite,
    completeFileUpload: filesWrite,
    abortFileUpload: filesWrite,
    createFileFromObjectPath: filesWrite,
    deleteFile: filesWrite,
  },
  File: { '*': filesRead },
  FilePage: { '*': filesRead },
  FileUpload: { '*': filesWrite },
};

const modelsRead = hasScope('api.model', 'read');
const modelsWrite = hasScope('api.model', 'write');
const models: PolicyMap = {
  // modelOwners: the inference subgraph's system calls (@inaccessible: not in the public API).
  Query: { models: modelsRead, model: modelsRead, workerActiveModels: isWorker, modelOwners: isGatewaySystem },
  Mutation: {
    createBaseModel: modelsWrite,
    registerFineTunedModel: modelsWrite,
    updateModelConfig: modelsWrite,
    activateModel: modelsWrite,
    deactivateModel: modelsWrite,
    deleteModel: modelsWrite,
    // The model loader's worker API (LLMariner ModelsWorkerService): registration keys only.
    acquireModelLoad: isWorker,
    reportModelLoading: isWorker,
  },
  Model: { '*': modelsRead },
  ModelLoadTask: { '*': isWorker },
  ActiveModel: { '*': isWorker },
  ModelOwner: { '*': isGatewaySystem },
  ModelConfig: { '*': modelsRead },
  RuntimeConfig: { '*': modelsRead },
  ModelScalingSchedule: { '*': anyOf(modelsRead, isWorker) },
  ClusterAllocationPolicy: { '*': modelsRead },
  ModelPage: { '*': modelsRead },
  ModelAdapter: { '*': modelsRead },
};

// LLMariner §9: `api.clusters` (organization owners, tenant system); the worker API takes registration keys.
const clustersRead = hasScope('api.clusters', 'read');
const clustersWrite = hasScope('api.clusters', 'write');
const clustersReadOrWorker = anyOf(clustersRead, isWorker);
const clusters: PolicyMap = {
  Query: {
    clusters: clustersRead,
    cluster: clustersRead,
    // Org-scoped in the resolver: clusters the caller's organization may use only.
    clusterTelemetry: clustersRead,
    workerCluster: isWorker,
    workerByRegistrationKey: isGatewaySystem,
    schedulingClusters: isGatewaySystem,
    clusterAccess: isGatewaySystem,
  },
  Mutation: {
    registerCluster: clustersWrite,
    unregisterCluster: clustersWrite,
    createClusterConfig: clustersWrite,
    updateClusterConfig: clustersWrite,
    deleteClusterConfig: clustersWrite,
    // Platform admins only: the resolver checks it (README "Security model").
    setClusterGrants: clustersWrite,
    reportComponentStatus: isWorker,
    reportClusterStatus: isWorker,
  },
  Cluster: { '*': clustersRead },
  ClusterPage: { '*': clustersRead },
  RegisteredCluster: { '*': clustersWrite },
  ComponentStatus: { '*': clustersReadOrWorker },
  ClusterStatus: { '*': clustersReadOrWorker },
  ClusterNode: { '*': clustersReadOrWorker },
  GpuPod: { '*': clustersReadOrWorker },
  ProvisionableResource: { '*': clustersReadOrWorker },
  ClusterConfig: { '*': clustersReadOrWorker },
  ClusterTelemetry: { '*': clustersRead },
  ClusterTelemetryPoint: { '*': clustersRead },
  TelemetryGpuModel: { '*': clustersRead },
  TelemetryNode: { '*': clustersRead },
  TelemetryNamespace: { '*': clustersRead },
  TelemetryGpu: { '*': clustersRead },
  WorkerCluster: { '*': anyOf(isWorker, isGatewaySystem) },
  SchedulingCluster: { '*': isGatewaySystem },
  ClusterAccess: { '*': isGatewaySystem },
};

const sessions: PolicyMap = {
  Cluster: { tunnels: clustersRead, connected: clustersRead, id: clustersRead },
  AgentTunnel: { '*': clustersRead },
  Subscription: { clusterTunnels: clustersRead },
  ClusterTunnelsEvent: { '*': clustersRead },
};

// LLMariner §9: inference is authorized as `api.model` (creating a completion is a write).
// LLMariner §10: api usage is `api.api_usages`; the rate limits are the caller's own; tokenize is a POST of
// the inference API (`api.model` write, as completions).
const usageRead = hasScope('api.api_usages', 'read');
const inference: PolicyMap = {
  Query: {
    inferenceStatus: modelsRead,
    inferenceRateLimit: isAuthenticated,
    budgets: inProject,
    modelPrices: inProject,
    apiUsages: usageRead,
    modelUsageSummaries: usageRead,
    // Every signed-in caller sees their own API calls; the resolver shows an organization's owners all of it.
    apiCallSummaries: isAuthenticated,
    tokenize: modelsWrite,
  },
  Mutation: {
    // Budgets: the resolvers allow only owners of the organization of the caller's project to change them.
    setBudget: inProject,
    deleteBudget: inProject,
    setModelPrice: inProject,
    deleteModelPrice: inProject,
    chatCompletion: modelsWrite,
    completion: modelsWrite,
    embeddings: modelsWrite,
    createChatCompletion: modelsWrite,
    createCompletion: modelsWrite,
    createEmbedding: modelsWrite,
    // Also the rule the data plane applies to POST /v1/audio/transcriptions (an inference request, as a completion).
    createTranscription: modelsWrite,
    reportRuntimes: isWorker,
    // API call records are appended by the gateway's system calls only (gateway/usage.ts).
    recordApiCalls: isGatewaySystem,
  },
  Subscription: {
    chatCompletionStream: modelsWrite,
    completionStream: modelsWrite,
    chatCompletionChunks: modelsWrite,
    completionChunks: modelsWrite,
    runtimesUpdated: modelsRead,
    runtimeScaling: modelsRead,
  },
  // The typed answers of chatCompletion, completion, embeddings and their streams: as the fields that return them.
  ChatCompletion: { '*': modelsWrite },
  Transcription: { '*': modelsWrite },
  TranscriptionSegment: { '*': modelsWrite },
  ChatCompletionChoice: { '*': modelsWrite },
  ChatCompletionMessage: { '*': modelsWrite },
  ChatCompletionChunk: { '*': modelsWrite },
  ChatCompletionChunkChoice: { '*': modelsWrite },
  ChatCompletionDelta: { '*': modelsWrite },
  ToolCall: { '*': modelsWrite },
  FunctionCall: { '*': modelsWrite },
  ToolCallDelta: { '*': modelsWrite },
  FunctionCallDelta: { '*': modelsWrite },
  ChatLogprobs: { '*': modelsWrite },
  TokenLogprob: { '*': modelsWrite },
  TopLogprob: { '*': modelsWrite },
  CompletionUsage: { '*': modelsWrite },
  Completion: { '*': modelsWrite },
  CompletionChoice: { '*': modelsWrite },
  CompletionLogprobs: { '*': modelsWrite },
  EmbeddingList: { '*': modelsWrite },
  Embedding: { '*': modelsWrite },
  EmbeddingUsage: { '*': modelsWrite },
  Model: { id: modelsRead, runtimes: modelsRead },
  Runtime: { '*': anyOf(modelsRead, isWorker) },
  RuntimeAutoscaling: { '*': anyOf(modelsRead, isWorker) },
  RuntimeScalingSchedule: { '*': anyOf(modelsRead, isWorker) },
  InferenceStatus: { '*': modelsRead },
  InferenceRateLimit: { '*': isAuthenticated },
  Budget: { '*': inProject },
  ModelPrice: { '*': inProject },
  ApiUsage: { '*': usageRead },
  ModelUsagePoint: { '*': usageRead },
  ModelUsageValue: { '*': usageRead },
  ApiCallSummary: { '*': isAuthenticated },
  ApiKey: { id: isAuthenticated },
};

// LLMariner §9: fine-tuning jobs are `api.fine_tuning.jobs`; the dispatcher's worker API takes registration keys.
const jobsRead = hasScope('api.fine_tuning.jobs', 'read');
const jobsWrite = hasScope('api.fine_tuning.jobs', 'write');
// LLMariner §9: batch jobs are `api.batch.jobs`. Logs and updates are read for either kind; the
// resolvers check the scope of the job's own kind.
const batchRead = hasScope('api.batch.jobs', 'read');
const batchWrite = hasScope('api.batch.jobs', 'write');
// Notebooks are `api.workspaces.notebooks`.
const notebooksRead = hasScope('api.workspaces.notebooks', 'read');
const notebooksWrite = hasScope('api.workspaces.notebooks', 'write');
const anyJobRead = anyOf(jobsRead, batchRead);
const jobs: PolicyMap = {
  Query: {
    fineTuningJobs: jobsRead,
    fineTuningJob: jobsRead,
    batchJobs: batchRead,
    batchJob: batchRead,
    notebooks: notebooksRead,
    notebook: notebooksRead,
    jobClusters: anyJobRead,
    jobSummaries: anyJobRead,
    workerJobs: isWorker,
  },
  Mutation: {
    createFineTuningJob: jobsWrite,
    cancelFineTuningJob: jobsWrite,
    createBatchJob: batchWrite,
    cancelBatchJob: batchWrite,
    deleteBatchJob: batchWrite,
    createNotebook: notebooksWrite,
    stopNotebook: notebooksWrite,
    startNotebook: notebooksWrite,
    deleteNotebook: notebooksWrite,
    reportJobStatus: isWorker,
    appendJobLogs: isWorker,
  },
  Subscription: { jobLogs: anyJobRead, jobUpdated: anyJobRead, jobsUpdated: anyJobRead },
  Job: { '*': anyJobRead },
  BatchJob: { '*': batchRead, cluster: clustersRead },
  BatchJobPage: { '*': batchRead },
  EnvVar: { '*': anyOf(batchRead, notebooksRead) },
  JobCluster: { '*': anyJobRead },
  Notebook: { '*': notebooksRead, cluster: clustersRead },
  NotebookPage: { '*': notebooksRead },
  NotebookResources: { '*': notebooksRead },
  ResourceAmount: { '*': notebooksRead },
  JobSummaryPoint: { '*': anyJobRead },
  JobSummaryValue: { '*': anyJobRead },
  DeleteJobPayload: { '*': batchWrite },
  Model: { id: modelsRead },
  Cluster: { id: clustersRead },
  FineTuningJob: { '*': jobsRead },
  FineTuningJobPage: { '*': jobsRead },
  FineTuningMethod: { '*': jobsRead },
  Hyperparameters: { '*': jobsRead },
  FineTuningIntegration: { '*': jobsRead },
  WandbIntegration: { '*': jobsRead },
  FineTuningJobError: { '*': jobsRead },
  JobLogLine: { '*': anyJobRead },
  JobLogPage: { '*': anyJobRead },
  JobLogChunk: { '*': anyJobRead },
  FineTuningJobEvent: { '*': jobsRead },
  FineTuningJobEventPage: { '*': jobsRead },
  FineTuningJobCheckpoint: { '*': jobsRead },
  FineTuningJobCheckpointPage: { '*': jobsRead },
  WorkerJob: { '*': isWorker },
};

// LLMariner §9: `api.vector-stores`. Search reads; embedding the query also needs `api.model.write`
// (the inference subgraph checks it, as the caller).
const vectorStoresRead = hasScope('api.vector-stores', 'read');
const vectorStoresWrite = hasScope('api.vector-stores', 'write');
const vectorstores: PolicyMap = {
  Query: {
    vectorStores: vectorStoresRead,
    vectorStore: vectorStoresRead,
    vectorStoreByName: vectorStoresRead,
    vectorStoreFiles: vectorStoresRead,
    vectorStoreFile: vectorStoresRead,
    vectorStoreFileBatch: vectorStoresRead,
    vectorStoreFileBatchFiles: vectorStoresRead,
    searchVectorStore: vectorStoresRead,
  },
  Mutation: {
    createVectorStore: vectorStoresWrite,
    updateVectorStore: vectorStoresWrite,
    deleteVectorStore: vectorStoresWrite,
    createVectorStoreFile: vectorStoresWrite,
    updateVectorStoreFileAttributes: vectorStoresWrite,
    deleteVectorStoreFile: vectorStoresWrite,
    createVectorStoreFileBatch: vectorStoresWrite,
    cancelVectorStoreFileBatch: vectorStoresWrite,
  },
  VectorStore: { '*': vectorStoresRead },
  VectorStorePage: { '*': vectorStoresRead },
  VectorStoreFileCounts: { '*': vectorStoresRead },
  VectorStoreExpiration: { '*': vectorStoresRead },
  VectorStoreFile: { '*': vectorStoresRead },
  VectorStoreFilePage: { '*': vectorStoresRead },
  VectorStoreFileError: { '*': vectorStoresRead },
  ChunkingStrategy: { '*': vectorStoresRead },
  VectorStoreFileBatch: { '*': vectorStoresRead },
  VectorStoreSearchResult: { '*': vectorStoresRead },
  VectorStoreSearchResults: { '*': vectorStoresRead },
};

// OpenAI Responses API: creating a response is a chat completion (`api.model` write, the rule of
// createChatCompletion, which the data plane applies to the generation itself); reading stored ones is a read.
const responses: PolicyMap = {
  Query: { response: modelsRead, responseInputItems: modelsRead },
  Mutation: { recordResponse: modelsWrite, deleteResponse: modelsWrite },
  Response: { '*': modelsRead },
  ResponseItem: { '*': modelsRead },
  ResponseItemPage: { '*': modelsRead },
  ResponseUsage: { '*': modelsRead },
  ResponseError: { '*': modelsRead },
};

// OpenAI's Batch API runs inference requests: reading batches is `api.model` read, creating or cancelling
// one a write (as a completion is); each request of it is authorized again as its creator when it runs.
const batches: PolicyMap = {
  Query: { batches: modelsRead, batch: modelsRead },
  Mutation: { createBatch: modelsWrite, cancelBatch: modelsWrite },
  Subscription: { batchUpdated: modelsRead },
  Batch: { '*': modelsRead },
  BatchPage: { '*': modelsRead },
  BatchRequestCounts: { '*': modelsRead },
  BatchError: { '*': modelsRead },
};

// The audit log: any signed-in caller may ask, the resolver answers only an OWNER of the organization
// asked about (another organization's entries never); entries are appended by the gateway's system
// calls only, and no field changes or deletes one (subgraphs/audit/README.md).
const audit: PolicyMap = {
  Query: { auditEvents: isAuthenticated },
  Mutation: { recordAuditEvents: isGatewaySystem },
  AuditEvent: { '*': isAuthenticated },
  AuditEventPage: { '*': isAuthenticated },
  AuditAction: { '*': isAuthenticated },
  AuditArgument: { '*': isAuthenticated },
};

/** Merges per-subgraph maps; a Type.field defined twice with different rules is a bug. */
function merge(...maps: PolicyMap[]): PolicyMap {
  const out: PolicyMap = {};
  for (const map of maps) {
    for (const [type, fields] of Object.entries(map)) {
      const target = (out[type] ??= {});
      for (const [field, rule] of Object.entries(fields)) {
        if (target[field] && target[field] !== rule) throw new Error(`policy: ${type}.${field} has two rules`);
        target[field] = rule;
      }
    }
  }
  return out;
}

/** The whole platform's policy, by subgraph. */
export const subgraphPolicies = { users, rbac, files, models, clusters, sessions, inference, jobs, vectorstores, responses, batches, audit } as const;

/** The policy for one subgraph: its own types, the shared ones and the federation plumbing. */
export function policyFor(subgraph: keyof typeof subgraphPolicies): PolicyMap {
  return merge(federation, shared, subgraphPolicies[subgraph]);
}

/** The supergraph policy the gateway evaluates. */
export const policy: PolicyMap = merge(federation, shared, ...Object.values(subgraphPolicies));

/** The rule for `Type.field`: the field's own, else the type's '*', else undefined (deny). */
export function ruleFor(map: PolicyMap, type: string, field: string): Rule | undefined {
  const fields = map[type];
  return fields?.[field] ?? fields?.['*'];
}
