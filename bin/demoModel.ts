import { Readable } from 'node:stream';
import { tinyGguf } from '../agent/runtimes/tinyGguf.js';
import { tinyWhisperModel } from '../agent/runtimes/tinyWhisper.js';
import type { ObjectStore } from '../lib/objectStore/index.js';
import type { ModelStore } from '../subgraphs/models/store.js';
import { DEFAULT_MODEL_CONFIG } from '../subgraphs/models/validation.js';

export const DEMO_MODEL_ID = 'mariner-demo';
/** A tiny Whisper model (random weights) for audio transcriptions. */
export const DEMO_TRANSCRIPTION_MODEL_ID = 'mariner-demo-whisper';
/** A base model in Hugging Face layout for the demo trainer: fine-tuning starts from such models. */
export const DEMO_BASE_MODEL_ID = 'mariner-demo-base';

/**
 * `mariner up --demo-model`: a tiny GGUF model (random weights: it answers gibberish, quickly, on any
 * CPU) shared by the whole tenant, loaded and with on-demand allocation, so the first request
 * activates it and the embedded agent starts its runtime; beside it a tiny Whisper model for audio
 * transcriptions. A way to try the whole inference path with no model download. Nothing changes when
 * they exist already.
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
  // A tiny Whisper model in whisper.cpp's format (agent/runtimes/tinyWhisper.ts): the local executor's
  // whisper.cpp runtime serves it on POST /v1/audio/transcriptions, activated by the first request too.
  const whisperKey = `models/${tenantId}/${DEMO_TRANSCRIPTION_MODEL_ID}/ggml-model.bin`;
  if (!(await objectStore.head(whisperKey))) await objectStore.put(whisperKey, Readable.from([tinyWhisperModel()]));
  await models.insert({
    tenant_id: tenantId,
    id: DEMO_TRANSCRIPTION_MODEL_ID,
    project_id: null,
    organization_id: null,
    is_base_model: true,
    base_model_id: null,
    source_repository: 'OBJECT_STORE',
    source: objectStore.uri(whisperKey),
    loading_status: 'SUCCEEDED',
    loading_status_message: 'the built-in demo transcription model (random weights)',
    loading_failure_reason: null,
    formats: ['WHISPER_GGML'],
    activation_status: 'INACTIVE',
    config: { ...DEFAULT_MODEL_CONFIG, clusterAllocationPolicy: { allowedClusterIds: [], enableOnDemandAllocation: true } },
    owned_by: 'system',
  });
  // The same tiny model in Hugging Face layout (its config.json) beside its GGUF weights: something to
  // fine-tune with the demo trainer (which trains nothing but writes a random GGUF LoRA adapter of this
  // model's shapes), and to serve: the local runtime loads the folder's .gguf, and the fine-tuned
  // models' adapters on top of it (on demand: the first request activates it).
  const folder = `models/${tenantId}/${DEMO_BASE_MODEL_ID}`;
  if (!(await objectStore.head(`${folder}/config.json`))) {
    const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', mariner_demo: 'the weights are model.gguf beside this file' };
    await objectStore.put(`${folder}/config.json`, Readable.from([Buffer.from(JSON.stringify(config, null, 2))]));
  }
  if (!(await objectStore.head(`${folder}/model.gguf`))) await objectStore.put(`${folder}/model.gguf`, Readable.from([tinyGguf({ contextLength: 4096 })]));
  await models.insert({
    tenant_id: tenantId,
    id: DEMO_BASE_MODEL_ID,
    project_id: null,
    organization_id: null,
    is_base_model: true,
    base_model_id: null,
    source_repository: 'OBJECT_STORE',
    source: objectStore.uri(folder),
    loading_status: 'SUCCEEDED',
    loading_status_message: 'the built-in demo base model for the demo trainer (random weights, as mariner-demo)',
    loading_failure_reason: null,
    formats: ['HUGGING_FACE', 'GGUF'],
    activation_status: 'INACTIVE',
    config: { ...DEFAULT_MODEL_CONFIG, clusterAllocationPolicy: { allowedClusterIds: [], enableOnDemandAllocation: true } },
    owned_by: 'system',
  });
}
