import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyWhisperModel, toneWav } from './tinyWhisper.js';
import { startWhisperServer, type WhisperServer } from './whisperServer.js';

describe('whisperServer: the local transcription runtime (whisper.cpp through @fugood/whisper.node)', () => {
  let dir: string;
  let server: WhisperServer;
  let base: string;
  const post = (fields: Record<string, string>, audio: Buffer, signal?: AbortSignal) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(audio)], { type: 'audio/wav' }), 'audio.wav');
    return fetch(`${base}/v1/audio/transcriptions`, { method: 'POST', body: form, ...(signal ? { signal } : {}) });
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-whisper-'));
    writeFileSync(path.join(dir, 'ggml-tiny.bin'), tinyWhisperModel());
    server = await startWhisperServer({ modelPath: path.join(dir, 'ggml-tiny.bin'), modelId: 'tiny-whisper', threads: 1 });
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists its model and answers vLLM’s shape; another model name is a 404 model_not_found', async () => {
    expect(await (await fetch(`${base}/v1/models`)).json()).toMatchObject({ data: [{ id: 'tiny-whisper' }] });
    const answer = await post({ model: 'tiny-whisper', response_format: 'verbose_json' }, toneWav({ ms: 500 }));
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ language: 'english', duration: 0.5, segments: expect.any(Array) });
    const other = await post({ model: 'someone-else' }, toneWav());
    expect(other.status).toBe(404);
    expect(await other.json()).toMatchObject({ error: { code: 'model_not_found', param: 'model' } });
    expect((await post({ model: 'tiny-whisper', temperature: '2' }, toneWav())).status).toBe(400);
  });

  it('a client that leaves mid-transcription does not hold the runtime: the next request is answered once whisper.cpp is done with it', async () => {
    // Two minutes of audio: a few seconds of whisper.cpp on one thread. The binding cannot interrupt
    // whisper.cpp, and the promise of a job it was asked to stop never settles: without the runtime's
    // own bookkeeping the next request would wait for the 10-minute bound.
    const left = new AbortController();
    const abandoned = post({ model: 'tiny-whisper' }, toneWav({ ms: 120_000 }), left.signal).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 500));
    left.abort();
    await abandoned;
    const next = await post({ model: 'tiny-whisper' }, toneWav({ ms: 500 }));
    expect(next.status).toBe(200);
    expect(await (await fetch(`${base}/metrics`)).json()).toMatchObject({ inFlight: 0 });
  }, 45_000);
});
