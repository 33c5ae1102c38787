import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { tinyWhisperModel, toneWav } from '../agent/runtimes/tinyWhisper.js';
import { silentLogger } from '../lib/logging.js';
import { encodeTranscriptionForm } from '../lib/transcription.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * Audio transcriptions end to end: a tiny generated Whisper model (random weights: its words are
 * gibberish, so the shapes, formats and path are what is checked) served by the local executor's
 * whisper.cpp runtime, called with the official OpenAI SDK through REST → gateway → inference → tunnel
 * → agent → runtime.
 */
describe('audio transcriptions: a Whisper model on the local executor, with the OpenAI SDK', () => {
  let t: TestPlatform;
  let agent: Agent;
  let client: OpenAI;
  let dir: string;
  const modelId = 'tiny-whisper';
  const openapi = loadOpenApiValidator();
  const tone = () => toFile(toneWav({ ms: 500 }), 'tone.wav', { type: 'audio/wav' });
  const SRT_CUE = /^\d+\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\n.*\n$/;
  const VTT_CUE = /^\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}\n.*\n$/;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-transcriptions-'));
    // A request limit high enough never to refuse: its x-ratelimit-* headers show the admission ran.
    t = await startTestPlatform({
      config: { inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 1, rateLimitRequestsPerMinute: 1000, usageFlushIntervalMs: 50 } },
    });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, { id: modelId, weights: tinyWhisperModel(), registrationKey: registerCluster.registrationKey, formats: ['WHISPER_GGML'] });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
  }, 120_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('json (the default): {text, usage} as OpenAI writes it', async () => {
    const answer = await client.audio.transcriptions.create({ file: await tone(), model: modelId });
    expectValid(openapi.validateSchema('CreateTranscriptionResponseJson', answer));
    expect(typeof answer.text).toBe('string');
    expect(answer.text.length).toBeGreaterThan(0);
    expect(answer.usage).toEqual({ type: 'duration', seconds: 1 });
  });

  it('verbose_json: language, the audio duration and timed segments within it', async () => {
    const answer = await client.audio.transcriptions.create({ file: await tone(), model: modelId, response_format: 'verbose_json' });
    expectValid(openapi.validateSchema('CreateTranscriptionResponseVerboseJson', answer));
    expect(answer).toMatchObject({ language: 'english', duration: 0.5 });
    expect(answer.segments!.length).toBeGreaterThan(0);
    for (const segment of answer.segments!) {
      expect(segment.start).toBeGreaterThanOrEqual(0);
      expect(segment.end).toBeLessThanOrEqual(0.5);
      expect(segment.start).toBeLessThanOrEqual(segment.end);
    }
    expect(answer.text).toBe(
      answer
        .segments!.map((s) => s.text)
        .join('')
        .trim(),
    );
  });

  it('text, srt and vtt: plain text bodies in each format, from the same segments', async () => {
    const text = await client.audio.transcriptions.create({ file: await tone(), model: modelId, response_format: 'text' });
    const verbose = await client.audio.transcriptions.create({ file: await tone(), model: modelId, response_format: 'verbose_json' });
    expect(text).toBe(`${verbose.text}\n`);

    const srt = await client.audio.transcriptions.create({ file: await tone(), model: modelId, response_format: 'srt' });
    const cues = srt.split('\n\n').filter(Boolean);
    expect(cues).toHaveLength(verbose.segments!.length);
    for (const cue of cues) expect(`${cue}\n`).toMatch(SRT_CUE);
    expect(cues[0]!.startsWith('1\n')).toBe(true);

    const vtt = await client.audio.transcriptions.create({ file: await tone(), model: modelId, response_format: 'vtt' });
    expect(vtt.startsWith('WEBVTT\n\n')).toBe(true);
    const vttCues = vtt.slice('WEBVTT\n\n'.length).split('\n\n').filter(Boolean);
    expect(vttCues).toHaveLength(verbose.segments!.length);
    for (const cue of vttCues) expect(`${cue}\n`).toMatch(VTT_CUE);
  });

  it('bad input is a 400 naming the field: no file, no model, an unknown format, audio that does not decode; a file over 25 MB is a 413', async () => {
    const post = async (form: FormData) => {
      const response = await fetch(`${t.url}/v1/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: form });
      const body = (await response.json()) as { error: { param: string | null; message: string } };
      expectValid(openapi.validateSchema('ErrorResponse', body));
      return { status: response.status, param: body.error.param, message: body.error.message };
    };
    const form = (fields: Record<string, string>, file?: Buffer) => {
      const f = new FormData();
      for (const [name, value] of Object.entries(fields)) f.append(name, value);
      if (file) f.append('file', new Blob([new Uint8Array(file)], { type: 'audio/wav' }), 'tone.wav');
      return f;
    };
    expect(await post(form({ model: modelId }))).toMatchObject({ status: 400, param: 'file' });
    expect(await post(form({}, toneWav()))).toMatchObject({ status: 400, param: 'model' });
    const format = await client.audio.transcriptions.create({ file: await tone(), model: modelId, response_format: 'xml' as 'json' }).catch((e: unknown) => e);
    expect(format).toBeInstanceOf(OpenAI.BadRequestError);
    expect((format as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('response_format');
    const big = await post(form({ model: modelId }, Buffer.alloc(25 * 1024 * 1024 + 1)));
    expect(big).toMatchObject({ status: 413, param: 'file' });
    expect(big.message).toContain('26214400');
    expect(await post(form({ model: modelId }, Buffer.from('this is not audio')))).toMatchObject({ status: 400, param: 'file' });
    // Not multipart at all.
    const json = await fetch(`${t.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: modelId }),
    });
    expect(json.status).toBe(400);
  });

  it('the upload is read only for a caller who may transcribe, and only up to the limit: the refusal comes before the body is sent', async () => {
    const { port } = new URL(t.url);
    /** Sends the headers and the first 64 KiB of a body announced as `length` bytes, and waits for the answer (no more is sent). */
    const refusedEarly = (headers: Record<string, string>, length: number | null) =>
      new Promise<{ status: number; body: { error: { message: string; type: string; param: string | null; code: string | null } }; sent: number }>(
        (resolve, reject) => {
          let sent = 0;
          const req = http.request({
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/v1/audio/transcriptions',
            headers: {
              'content-type': 'multipart/form-data; boundary=xyz',
              ...(length === null ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(length) }),
              ...headers,
            },
          });
          req.on('error', reject);
          req.on('response', (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              req.destroy();
              resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')), sent });
            });
          });
          const first = Buffer.concat([Buffer.from('--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'), Buffer.alloc(64 * 1024)]);
          sent += first.length;
          req.write(first);
        },
      );
    const huge = 200 * 1024 * 1024;
    // No key, a bad key: 401 in OpenAI's shape, answered with 64 KiB of a 200 MiB upload sent.
    for (const headers of [{}, { authorization: 'Bearer sk-not-a-key' }] as Record<string, string>[]) {
      const answer = await refusedEarly(headers, huge);
      expect(answer.status).toBe(401);
      expectValid(openapi.validateSchema('ErrorResponse', answer.body));
      expect(answer.sent).toBeLessThan(huge);
    }
    // A member who may transcribe, with a body announced over the limit: 413 at once.
    const over = await refusedEarly({ authorization: `Bearer ${t.adminKey}` }, huge);
    expect(over.status).toBe(413);
    expectValid(openapi.validateSchema('ErrorResponse', over.body));
    expect(over.body.error).toMatchObject({ type: 'invalid_request_error', param: 'file', code: 'file_too_large' });
    expect(over.body.error.message).toContain('26214400');
  });

  it('GraphQL createTranscription transcribes an uploaded File of the project as REST does; another organization’s file is NOT_FOUND', async () => {
    const TRANSCRIBE = `mutation Transcribe($input: CreateTranscriptionInput!) {
      createTranscription(input: $input) { text language duration segments { start end text } }
    }`;
    const uploaded = await client.files.create({ file: await tone(), purpose: 'user_data' });
    const { createTranscription } = await t.gqlOk(TRANSCRIBE, { input: { model: modelId, fileId: uploaded.id, language: 'en' } });
    expect(createTranscription.language).toBe('english');
    expect(createTranscription.duration).toBeCloseTo(0.5, 1);
    expect(createTranscription.segments.length).toBeGreaterThan(0);
    for (const segment of createTranscription.segments) expect(segment.end).toBeLessThanOrEqual(createTranscription.duration + 1e-6);
    // The same audio through REST: the same greedy decode, the same words.
    const rest = await client.audio.transcriptions.create({ file: await tone(), model: modelId, language: 'en' });
    expect(createTranscription.text).toBe(rest.text);

    const other = await projectWithKey(t, 'Transcription File Outsiders', { role: 'OWNER' });
    const refused = await t.gql(TRANSCRIBE, { input: { model: modelId, fileId: uploaded.id } }, { token: other.key });
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    expect(refused.errors?.[0]?.message).toContain(uploaded.id);
    const anonymous = await t.gql(TRANSCRIBE, { input: { model: modelId, fileId: uploaded.id } }, { token: 'sk-not-a-key' });
    expect(anonymous.errors?.[0]?.extensions?.['code']).toBe('UNAUTHENTICATED');
    const missing = await t.gql(TRANSCRIBE, { input: { model: modelId, fileId: 'file-nosuchfile' } });
    expect(missing.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
  });

  it('authentication and visibility: no key is 401; another organization gets 404 for the model, as for one that does not exist', async () => {
    const anonymous = new OpenAI({ apiKey: 'not-a-key', baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(anonymous.audio.transcriptions.create({ file: await tone(), model: modelId })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const other = await projectWithKey(t, 'Transcription Outsiders', { role: 'OWNER' });
    const outsider = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const hidden = await outsider.audio.transcriptions.create({ file: await tone(), model: modelId }).catch((e: unknown) => e);
    const missing = await outsider.audio.transcriptions.create({ file: await tone(), model: 'no-such-model' }).catch((e: unknown) => e);
    expect(hidden).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((hidden as Error).message.replace(modelId, 'X')).toBe((missing as Error).message.replace('no-such-model', 'X'));
  });

  it('the data plane’s HTTP hop (a gateway in another process) reads the form as multipart, answers only the gateway and applies the policy rule', async () => {
    const url = t.platform.subgraphUrls.inference.replace(/\/graphql$/, '/inference/v1/audio/transcriptions');
    const { contentType, body } = encodeTranscriptionForm({ model: modelId }, { data: toneWav(), filename: 'tone.wav', contentType: 'audio/wav' });
    const bare = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body: new Uint8Array(body) });
    expect(bare.status).toBe(401);
    const token = await t.platform.tokens.mint('inference', 'req-transcription-plane', null, true);
    const notMultipart = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-mariner-internal-token': token }, body: '{}' });
    expect(notMultipart.status).toBe(400);
    expect(await notMultipart.json()).toMatchObject({ errors: [{ extensions: { code: 'BAD_USER_INPUT', field: 'file' } }] });
    const answered = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': contentType, 'x-mariner-internal-token': token },
      body: new Uint8Array(body),
    });
    // The form was read, then the policy rule applied: a token without a user is refused as /graphql would refuse it.
    expect(answered.status).toBe(401);
    expect(await answered.json()).toMatchObject({ errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });
  });

  it('rate limits: a transcription is admitted against the key’s limit, with OpenAI’s x-ratelimit-* headers', async () => {
    // A key of the admin's project (the bootstrap admin key itself is not limited).
    const { createApiKey } = await t.gqlOk('mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }', {
      input: { name: 'transcription-limited' },
    });
    const limited = new OpenAI({ apiKey: createApiKey.secret, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const first = await limited.audio.transcriptions.create({ file: await tone(), model: modelId }).withResponse();
    const second = await limited.audio.transcriptions.create({ file: await tone(), model: modelId }).withResponse();
    expect(first.response.headers.get('x-ratelimit-limit-requests')).toBe('1000');
    const remaining = (r: typeof first) => Number(r.response.headers.get('x-ratelimit-remaining-requests'));
    expect(remaining(second)).toBe(remaining(first) - 1);
  });

  it('usage is recorded per request', async () => {
    type Usage = { model_id: string; api_key_id: string; total_requests: number };
    // A key of its own: /v1/api_usages has a row per caller, key and model, and the records of the tests
    // above (other keys, written in batches a flush interval later) may still arrive while this one runs.
    const { createApiKey } = await t.gqlOk('mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }', {
      input: { name: 'transcription-usage' },
    });
    const own = new OpenAI({ apiKey: createApiKey.secret, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const requests = async () =>
      ((await (await fetch(`${t.url}/v1/api_usages`, { headers: { authorization: `Bearer ${t.adminKey}` } })).json()) as { usages: Usage[] }).usages
        .filter((u) => u.model_id === modelId && u.api_key_id === createApiKey.apiKey.id)
        .reduce((sum, u) => sum + u.total_requests, 0);
    expect(await requests()).toBe(0);
    await own.audio.transcriptions.create({ file: await tone(), model: modelId });
    expect(await waitFor(requests, (n) => n > 0, 'the usage record of the transcription')).toBe(1);
    const { apiUsages } = await t.gqlOk('{ apiUsages { modelId totalRequests } }');
    expect(apiUsages).toContainEqual(expect.objectContaining({ modelId }));
  }, 60_000);
});
