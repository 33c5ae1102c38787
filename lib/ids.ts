import { createHash, randomBytes } from 'node:crypto';
import { badInput } from './errors.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Unbiased random string over [A-Za-z0-9]. */
export function randomString(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 * 62: bytes above it would bias the first characters.
      if (byte < 248 && out.length < length) out += ALPHABET[byte % 62];
    }
  }
  return out;
}

/**
 * Id prefixes, one per kind of resource (LLMariner conventions: `file-`, `ftjob-`, `cluster-`, `key_`).
 * Every id Mariner issues is a prefix followed by random characters.
 */
export const IdPrefix = {
  organization: 'org-',
  project: 'proj-',
  user: 'user-',
  apiKey: 'key_',
  file: 'file-',
  fineTuningJob: 'ftjob-',
  fineTuningEvent: 'ftevent-',
  fineTuningCheckpoint: 'ftckpt-',
  batchJob: 'batchjob-',
  notebook: 'nb-',
  cluster: 'cluster-',
  vectorStore: 'vs_',
  vectorStoreFileBatch: 'vsfb_',
  // OpenAI Responses API: a response, and the items of its input and output (messages, function calls, file searches).
  response: 'resp_',
  responseMessage: 'msg_',
  functionCall: 'fc_',
  fileSearchCall: 'fs_',
  /** OpenAI's Batch API (not LLMariner's `batchjob-`); each request of one gets a `batch_req_` id. */
  batch: 'batch_',
  batchRequest: 'batch_req_',
  /** A token budget of an API key or project (subgraphs/inference/budgets.ts). */
  budget: 'budget_',
} as const;
export type IdKind = keyof typeof IdPrefix;

const ID_BODY_LENGTH = 24;

export function newId(kind: IdKind): string {
  return IdPrefix[kind] + randomString(ID_BODY_LENGTH);
}

const ID_BODY = /^[A-Za-z0-9]{1,64}$/;

export function isId(kind: IdKind, value: string): boolean {
  const prefix = IdPrefix[kind];
  return value.startsWith(prefix) && ID_BODY.test(value.slice(prefix.length));
}

/** Throws BAD_USER_INPUT unless `value` is an id of `kind`; `field` names the argument. */
export function assertId(kind: IdKind, value: string, field: string): string {
  if (!isId(kind, value)) {
    throw badInput(`${field}: "${truncate(value)}" is not a valid ${kind} id (expected ${IdPrefix[kind]}...)`, field);
  }
  return value;
}

function truncate(value: string): string {
  return value.length > 40 ? `${value.slice(0, 40)}...` : value;
}

/** API key secrets: `sk-` + 48 characters (LLMariner user-manager api_keys.go). */
export function newApiKeySecret(): string {
  return `sk-${randomString(48)}`;
}

/** Cluster registration keys: `clusterkey-` + 48 characters (LLMariner cluster-manager). */
export function newRegistrationKey(): string {
  return `clusterkey-${randomString(48)}`;
}

/** How credentials (API keys, registration keys) are stored: their SHA-256, never the secret. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
