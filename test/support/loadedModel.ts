import OpenAI, { toFile } from 'openai';
import type { TestPlatform } from './platform.js';

/**
 * A base model from weights uploaded as a File, loaded as its cluster's loader reports a load
 * (acquire, then SUCCEEDED with the File's object and `formats`), then activated unless `activate` is
 * false: what a test needs before an agent can run the model. `input` adds CreateBaseModelInput fields
 * (`config`, `isProjectScoped`); `token` is the creator's credential, a platform admin's: only they
 * create base models (default: the admin key).
 */
export async function loadedModelFromFile(
  t: TestPlatform,
  options: { id: string; weights: Buffer; registrationKey: string; token?: string; formats?: string[]; input?: Record<string, unknown>; activate?: boolean },
): Promise<void> {
  const token = options.token ?? t.adminKey;
  const sdk = new OpenAI({ apiKey: token, baseURL: `${t.url}/v1`, maxRetries: 0 });
  const file = await sdk.files.create({ file: await toFile(options.weights, `${options.id}.gguf`), purpose: 'user_data' });
  await t.gqlOk(
    'mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }',
    { input: { id: options.id, sourceRepository: 'FILE', source: file.id, ...options.input } },
    { token },
  );
  const worker = { token: options.registrationKey };
  const { acquireModelLoad: task } = await t.gqlOk<{ acquireModelLoad: { modelId: string; source: string } | null }>(
    'mutation { acquireModelLoad { modelId source } }',
    {},
    worker,
  );
  if (task?.modelId !== options.id) throw new Error(`the loader was given ${task?.modelId ?? 'nothing'} to load, not ${options.id}`);
  await t.gqlOk(
    'mutation($input: ReportModelLoadingInput!) { reportModelLoading(input: $input) { loadingStatus } }',
    { input: { id: options.id, status: 'SUCCEEDED', objectPath: task.source, formats: options.formats ?? ['GGUF'] } },
    worker,
  );
  if (options.activate !== false) await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: options.id }, { token });
}
