import { ErrorCode, MarinerError } from '../../lib/errors.js';
import { graphqlRequest } from '../../lib/graphqlClient.js';
import { INTERNAL_TOKEN_HEADER, type Identity, type InternalTokens } from '../../lib/identity.js';

/** A file as job validation needs it. */
export interface PeerFile {
  id: string;
  filename: string;
  purpose: string;
  status: string;
  objectKey: string;
}

export interface PeerModel {
  id: string;
  isBaseModel: boolean;
  loadingStatus: string;
  formats: string[];
  source: string;
}

export interface PeerAssignment {
  clusterId: string | null;
  namespace: string;
  kueueQueueName: string | null;
}

export interface SchedulingCluster {
  id: string;
  name: string;
  gpuCapacity: number;
  gpuAllocated: number;
  stale: boolean;
  statusUpdatedAt: string | null;
  gpuPodCount: number;
}

/** Who a call is made for: a caller (their identity and request id), or the system. */
export interface OnBehalfOf {
  requestId: string;
  identity: Identity | null;
}

/**
 * The other subgraphs the jobs subgraph asks (DESIGN §3: subgraphs own their data): files, models
 * and projects are read as the caller, so a job can only use what its creator could; cluster
 * capacity is read as the system, for one organization (only the clusters it may use).
 */
export interface JobPeers {
  file(caller: OnBehalfOf, id: string): Promise<PeerFile | null>;
  model(caller: OnBehalfOf, id: string): Promise<PeerModel | null>;
  assignments(caller: OnBehalfOf, projectId: string): Promise<PeerAssignment[]>;
  /** The clusters of the tenant the organization's projects may use (lib/clusterAccess.ts), with their GPUs. */
  schedulingClusters(requestId: string, tenantId: string, organizationId: string): Promise<SchedulingCluster[]>;
  /**
   * Whether the caller's API key `id` still exists (the users subgraph's `apiKeys`, as the caller: a
   * key lists itself to its own user). False too when the caller no longer reaches the key's project.
   */
  apiKeyExists(caller: OnBehalfOf, id: string): Promise<boolean>;
  /** An API key of the caller in the project (a notebook's OPENAI_API_KEY, LLMariner: the creator's credential). */
  createApiKey(caller: OnBehalfOf, input: { name: string; projectId: string }): Promise<{ id: string; secret: string }>;
  deleteApiKey(caller: OnBehalfOf, id: string): Promise<void>;
  /** Registers the job's output as a fine-tuned model; returns its id. */
  registerFineTunedModel(caller: OnBehalfOf, input: { baseModelId: string; suffix: string; source: string }): Promise<string>;
}

export interface PeerUrls {
  files: string;
  models: string;
  users: string;
  clusters: string;
}

/** A peer that does not answer within this is down: fail the call, never hang the mutation. */
const TIMEOUT_MS = 10_000;

const FILE = `query JobFile($id: ID!) { file(id: $id) { id filename purpose status objectKey } }`;
const MODEL = `query JobModel($id: ID!) { model(id: $id, includeLoading: true) { id isBaseModel loadingStatus formats source } }`;
const PROJECT = `query JobProject($id: ID!) { project(id: $id) { assignments { clusterId namespace kueueQueueName } } }`;
const CLUSTERS = `query JobClusters($tenantId: ID!, $organizationId: ID!) {
  schedulingClusters(tenantId: $tenantId, organizationId: $organizationId) { id name gpuCapacity gpuAllocated stale statusUpdatedAt gpuPodCount }
}`;
const API_KEYS = `query JobCreatorKeys($after: String) { apiKeys(after: $after, limit: 100) { items { id } hasMore } }`;
const CREATE_KEY = `mutation JobApiKey($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id } secret } }`;
const DELETE_KEY = `mutation JobApiKeyDeletion($id: ID!) { deleteApiKey(id: $id) { id } }`;
const REGISTER = `mutation JobModelRegistration($input: RegisterFineTunedModelInput!) { registerFineTunedModel(input: $input) { id } }`;

export function createJobPeers(urls: PeerUrls, tokens: InternalTokens): JobPeers {
  const call = async <T>(audience: keyof PeerUrls, caller: OnBehalfOf, query: string, variables: Record<string, unknown>, system = false) =>
    graphqlRequest<T>(
      urls[audience],
      query,
      variables,
      { [INTERNAL_TOKEN_HEADER]: await tokens.mint(audience, caller.requestId, system ? null : caller.identity, system) },
      AbortSignal.timeout(TIMEOUT_MS),
    );
  return {
    file: async (caller, id) => (await call<{ file: PeerFile | null }>('files', caller, FILE, { id })).file,
    model: async (caller, id) => (await call<{ model: PeerModel | null }>('models', caller, MODEL, { id })).model,
    assignments: async (caller, projectId) =>
      (await call<{ project: { assignments: PeerAssignment[] } | null }>('users', caller, PROJECT, { id: projectId })).project?.assignments ?? [],
    schedulingClusters: async (requestId, tenantId, organizationId) =>
      (await call<{ schedulingClusters: SchedulingCluster[] }>('clusters', { requestId, identity: null }, CLUSTERS, { tenantId, organizationId }, true)).schedulingClusters,
    apiKeyExists: async (caller, id) => {
      let after: string | null = null;
      for (;;) {
        let page: { items: { id: string }[]; hasMore: boolean };
        try {
          page = (await call<{ apiKeys: typeof page }>('users', caller, API_KEYS, { after })).apiKeys;
        } catch (error) {
          // The project is gone, or the caller is no longer let into it: the key acts for nothing there.
          if (error instanceof MarinerError && (error.code === ErrorCode.NOT_FOUND || error.code === ErrorCode.FORBIDDEN || error.code === ErrorCode.UNAUTHENTICATED)) return false;
          throw error;
        }
        if (page.items.some((key) => key.id === id)) return true;
        if (!page.hasMore || page.items.length === 0) return false;
        after = page.items[page.items.length - 1]!.id;
      }
    },
    createApiKey: async (caller, input) => {
      const { createApiKey } = await call<{ createApiKey: { apiKey: { id: string }; secret: string } }>('users', caller, CREATE_KEY, { input });
      return { id: createApiKey.apiKey.id, secret: createApiKey.secret };
    },
    deleteApiKey: async (caller, id) => {
      await call('users', caller, DELETE_KEY, { id });
    },
    registerFineTunedModel: async (caller, input) =>
      (await call<{ registerFineTunedModel: { id: string } }>('models', caller, REGISTER, { input })).registerFineTunedModel.id,
  };
}
