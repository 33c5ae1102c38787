/**
 * The pubsub channels (lib/pubsub.ts) the inference component listens to, in one module that both the
 * resolvers and the caches can import without a cycle.
 */

/** Agents' runtime reports are announced here (reportRuntimes publishes after storing one); the payload is the tenant id. */
export const RUNTIMES_CHANNEL = 'inference_runtimes';

/**
 * The models subgraph announces here that a model of a tenant changed (created, deleted, activated,
 * deactivated, configured, loaded); the payload is the tenant id. The same name as
 * subgraphs/models/events.ts `MODELS_CHANGED_CHANNEL`: a subgraph may not import another's modules
 * (test/layering.test.ts), so the name is the contract, and test/inferenceCaches.test.ts checks both agree.
 */
export const MODELS_CHANGED_CHANNEL = 'models_changed';
