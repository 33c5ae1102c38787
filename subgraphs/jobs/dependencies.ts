import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Identity, InternalTokens } from '../../lib/identity.js';
import { asCaller, asSystem, createInternalClient } from '../../lib/internalClient.js';
import { JobClustersDocument, type JobClustersQuery } from './generated/clustersOperations.js';
import { JobFileDocument, type JobFileQuery } from './generated/filesOperations.js';
import { JobModelDocument, JobModelRegistrationDocument, type JobModelQuery } from './generated/modelsOperations.js';
import { JobApiKeyDeletionDocument, JobApiKeyDocument, JobCreatorKeysDocument, JobProjectDocument, type JobProjectQuery } from './generated/usersOperations.js';

/** A job's input file (training, validation, batch input), as job validation needs it. */
export type InputFile = NonNullable<JobFileQuery['file']>;

/** The model a fine-tuning job starts from. */
export type BaseModel = NonNullable<JobModelQuery['model']>;

/** Where a project's jobs may run: a cluster (or any the organization may use) and a namespace. */
export type ProjectAssignment = NonNullable<JobProjectQuery['project']>['assignments'][number];

/** A cluster as the scheduler sees it: its GPUs and whether it reports. */
export type SchedulingCluster = JobClustersQuery['schedulingClusters'][number];

/** Who a call is made for: a caller (their identity and request id), or a job's creator. */
export interface OnBehalfOf {
  requestId: string;
  identity: Identity | null;
}

/**
 * What the jobs subgraph asks of the other subgraphs (DESIGN §3: subgraphs own their data): files,
 * models and projects are read as the caller, so a job can only use what its creator could; cluster
 * capacity is read as the system, for one organization (only the clusters it may use). The operations
 * are in operations/<subgraph>.graphql.
 */
export interface JobDependencies {
  file(caller: OnBehalfOf, id: string): Promise<InputFile | null>;
  model(caller: OnBehalfOf, id: string): Promise<BaseModel | null>;
  assignments(caller: OnBehalfOf, projectId: string): Promise<ProjectAssignment[]>;
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

/** Where the subgraphs the jobs subgraph asks run. */
export type JobDependencyUrls = Record<'files' | 'models' | 'users' | 'clusters', string>;

export function createJobDependencies(urls: JobDependencyUrls, tokens: InternalTokens): JobDependencies {
  const files = createInternalClient({ subgraph: 'files', url: urls.files, tokens });
  const models = createInternalClient({ subgraph: 'models', url: urls.models, tokens });
  const users = createInternalClient({ subgraph: 'users', url: urls.users, tokens });
  const clusters = createInternalClient({ subgraph: 'clusters', url: urls.clusters, tokens });
  return {
    file: async (caller, id) => (await files.request(asCaller(caller), JobFileDocument, { id })).file,
    model: async (caller, id) => (await models.request(asCaller(caller), JobModelDocument, { id })).model,
    assignments: async (caller, projectId) => (await users.request(asCaller(caller), JobProjectDocument, { id: projectId })).project?.assignments ?? [],
    schedulingClusters: async (requestId, tenantId, organizationId) =>
      (await clusters.request(asSystem(requestId), JobClustersDocument, { tenantId, organizationId })).schedulingClusters,
    apiKeyExists: async (caller, id) => {
      let after: string | null = null;
      for (;;) {
        let page;
        try {
          page = (await users.request(asCaller(caller), JobCreatorKeysDocument, { after })).apiKeys;
        } catch (error) {
          // The project is gone, or the caller is no longer let into it: the key acts for nothing there.
          if (
            error instanceof MarinerError &&
            (error.code === ErrorCode.NOT_FOUND || error.code === ErrorCode.FORBIDDEN || error.code === ErrorCode.UNAUTHENTICATED)
          )
            return false;
          throw error;
        }
        if (page.items.some((key) => key.id === id)) return true;
        if (!page.hasMore || page.items.length === 0) return false;
        after = page.items[page.items.length - 1]!.id;
      }
    },
    createApiKey: async (caller, input) => {
      const { createApiKey } = await users.request(asCaller(caller), JobApiKeyDocument, { input });
      return { id: createApiKey.apiKey.id, secret: createApiKey.secret };
    },
    deleteApiKey: async (caller, id) => {
      await users.request(asCaller(caller), JobApiKeyDeletionDocument, { id });
    },
    registerFineTunedModel: async (caller, input) =>
      (await models.request(asCaller(caller), JobModelRegistrationDocument, { input })).registerFineTunedModel.id,
  };
}
