import { Readable } from 'node:stream';
import { tinyGguf } from '../agent/runtimes/tinyGguf.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import type { ModelStore } from '../subgraphs/models/store.js';
import { DEFAULT_MODEL_CONFIG } from '../subgraphs/models/validation.js';

export const DEMO_MODEL_ID = 'mariner-demo';

/**
 * `mariner up --demo-model`: a tiny GGUF model (random weights: it answers gibberish, quickly, on any
 * CPU) shared by the whole tenant, loaded and with on-demand allocation, so the first request
 * activates it and the embedded agent starts its runtime. A way to try the whole inference path with
 * no model download. Nothing changes when it exists already.
 */
export async function installDemoModel(models: ModelStore, objectStore: ObjectStore, tenantId: string): Promise<void> {
  const key = `models/${tenantId}/${DEMO_MODEL_ID}/model.gguf`;
  // A 4096-token context (the tiny model's default is 512): room for the chunks the `rag` tool adds.
  if (!(await objectStore.head(key))) await objectStore.put(key, Readable.from([tinyGguf({ contextLength: 4096 })]));
  await models.insert({
    tenant_id: tenantId,
    id: DEMO_MODEL_ID,
    project_id: null,
    organization_id: null,
    is_base_model: true,
    base_model_id: null,
    source_repository: 'OBJECT_STORE',
    source: objectStore.uri(key),
    loading_status: 'SUCCEEDED',
    loading_status_message: 'the built-in demo model (random weights)',
    loading_failure_reason: null,
    formats: ['GGUF'],
    activation_status: 'INACTIVE',
    config: { ...DEFAULT_MODEL_CONFIG, clusterAllocationPolicy: { allowedClusterIds: [], enableOnDemandAllocation: true } },
    owned_by: 'system',
  });
}
