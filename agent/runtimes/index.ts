/** The local executor's inference runtimes: node-llama-cpp processes speaking the OpenAI API. */
export { type LocalRuntime, LocalRuntimeManager, type LocalRuntimeManagerOptions } from './localRuntimes.js';
export { type LlamaCppServer, type LlamaCppServerOptions, startLlamaCppServer } from './llamaCppServer.js';
