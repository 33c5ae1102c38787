/**
 * How a request for a fine-tuned model served as a LoRA adapter of its base (issue 18) travels: the
 * inference router sends it to a runtime of the BASE model over the agent tunnel, with these headers
 * naming the adapter; the agent fetches the adapter's file (once) and gives the runtime its local path.
 */

/** The fine-tuned model's id (`ft:<base>:<suffix>`): the adapter the runtime applies. */
export const ADAPTER_MODEL_HEADER = 'x-mariner-adapter';
/** The object-store URI of the adapter (a GGUF file, or the job's output folder holding one). */
export const ADAPTER_SOURCE_HEADER = 'x-mariner-adapter-source';
/**
 * The adapter's formats (comma-separated ModelFormat values: GGUF_ADAPTER, PEFT_SAFETENSORS): a runtime
 * that serves one format only refuses the others with the reason (agent/kubernetes/llamaCppAdapters.ts).
 */
export const ADAPTER_FORMATS_HEADER = 'x-mariner-adapter-formats';
/**
 * Set by the agent (agent/localRuntimeHost.ts) for the local runtime (agent/runtimes/llamaCppServer.ts):
 * the local path of the adapter's GGUF file, which the runtime loads on first use and keeps. Empty on
 * every other request, so a path never comes from the caller.
 */
export const ADAPTER_PATH_HEADER = 'x-mariner-adapter-path';
