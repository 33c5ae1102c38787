#!/usr/bin/env -S npx tsx
/**
 * The local executor's transcription runtime: one Whisper model (whisper.cpp's ggml format) served over
 * HTTP with the OpenAI audio API, as vLLM serves a Whisper model, by whisper.cpp in process through its
 * Node binding (@fugood/whisper.node, the CPU prebuilt). A child process of localRuntimes.ts, like
 * llamaCppServer.ts:
 *
 *   whisperServer --model <ggml-*.bin> --model-id <id> [--port 0] [--host 127.0.0.1] [--threads N] [--exit-on-stdin-close]
 *
 * Once the model is loaded it prints one JSON line to stdout, `{"ready":true,"port":<port>}`.
 *
 * POST /v1/audio/transcriptions (multipart: `file`, `model`, `response_format` json | text |
 * verbose_json | srt | vtt, `language`, `prompt`, `temperature`): the file (WAV, MP3 or FLAC; whisper.cpp
 * decodes and resamples it) is transcribed and answered in the asked format from whisper.cpp's timed
 * segments (lib/transcription.ts). One transcription runs at a time (whisper.cpp's context is not
 * shared); the others wait their turn. GET /v1/models; GET /health; GET /metrics →
 * `{"inFlight": n, "served": n}`. SIGTERM (or stdin closing, with `--exit-on-stdin-close`): stop
 * accepting, finish what is in flight (up to 10 s), exit.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { MarinerError } from '../../lib/errors.js';
import { formatTranscript, isTranscriptionFormat, readTranscriptionForm, TRANSCRIPTION_FORMATS, type TranscriptSegment } from '../../lib/transcription.js';

/** What this runtime uses of @fugood/whisper.node (its package ships no compiled typings). */
interface WhisperContext {
  transcribeFile(
    file: string,
    options: { language?: string; prompt?: string; temperature?: number; temperatureInc?: number; maxThreads?: number },
  ): { stop(): Promise<void>; promise: Promise<{ result: string; language?: string; segments: { text: string; t0: number; t1: number }[] }> };
  release(): Promise<void>;
}
interface WhisperBinding {
  initWhisper(options: { filePath: string; useGpu?: boolean }): Promise<WhisperContext>;
}

export interface WhisperServerOptions {
  modelPath: string;
  modelId: string;
  host?: string;
  port?: number;
  /** CPU threads per transcription (default: all cores but one, at least 1). */
  threads?: number;
  /**
   * How long one transcription may take before it is answered 500 (default 10 min). The binding's
   * promise never settles when whisper.cpp fails inside its worker: this bounds the wait.
   */
  timeoutMs?: number;
  /** How long close() waits for in-flight requests (default 10 s). */
  drainMs?: number;
}

export interface WhisperServer {
  port: number;
  close(): Promise<void>;
}

/** OpenAI writes the language's English name in verbose_json; whisper.cpp gives its code. */
const LANGUAGE_NAMES: Record<string, string> = {
  en: 'english',
  de: 'german',
  es: 'spanish',
  fr: 'french',
  it: 'italian',
  ja: 'japanese',
  ko: 'korean',
  nl: 'dutch',
  pt: 'portuguese',
  ru: 'russian',
  zh: 'chinese',
};

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};
const sendError = (res: ServerResponse, status: number, message: string, param: string | null = null, code: string | null = null) =>
  sendJson(res, status, { error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', param, code } });

/** The length in seconds of a PCM WAV file, from its header; null for anything else. */
export function wavDuration(data: Buffer): number | null {
  if (data.length < 44 || data.toString('ascii', 0, 4) !== 'RIFF' || data.toString('ascii', 8, 12) !== 'WAVE') return null;
  let offset = 12;
  let byteRate = 0;
  while (offset + 8 <= data.length) {
    const id = data.toString('ascii', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    if (id === 'fmt ' && offset + 16 <= data.length) byteRate = data.readUInt32LE(offset + 16);
    if (id === 'data') return byteRate > 0 ? Math.min(size, data.length - offset - 8) / byteRate : null;
    offset += 8 + size + (size % 2);
  }
  return null;
}

export async function startWhisperServer(options: WhisperServerOptions): Promise<WhisperServer> {
  const binding = createRequire(import.meta.url)('@fugood/whisper.node') as WhisperBinding;
  const context = await binding.initWhisper({ filePath: options.modelPath, useGpu: false });
  const threads = options.threads ?? Math.max(1, os.availableParallelism() - 1);
  const timeoutMs = options.timeoutMs ?? 600_000;
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'mariner-whisper-'));
  let inFlight = 0;
  let served = 0;
  let closing = false;
  /** One transcription at a time: each waits for the one before. */
  let turn: Promise<unknown> = Promise.resolve();

  async function transcribe(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let form;
    try {
      form = await readTranscriptionForm(req.headers, req);
    } catch (error) {
      return sendError(res, 400, (error as Error).message, error instanceof MarinerError ? ((error.extensions['field'] as string | undefined) ?? null) : null);
    }
    const { fields, audio } = form;
    if (!audio) return sendError(res, 400, 'Missing the "file" field: the audio file to transcribe', 'file');
    if (fields['model'] !== undefined && fields['model'] !== options.modelId) {
      return sendError(res, 404, `The model ${fields['model'].slice(0, 200)} does not exist`, 'model', 'model_not_found');
    }
    const format = fields['response_format'] ?? 'json';
    if (!isTranscriptionFormat(format)) return sendError(res, 400, `response_format must be one of ${TRANSCRIPTION_FORMATS.join(', ')}`, 'response_format');
    const temperature = fields['temperature'] === undefined ? undefined : Number(fields['temperature']);
    if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0 && temperature <= 1)) {
      return sendError(res, 400, 'temperature must be a number from 0 to 1', 'temperature');
    }
    const language = fields['language'];
    if (language !== undefined && !/^[a-z]{2,3}$/.test(language)) return sendError(res, 400, 'language must be an ISO-639-1 code such as "en"', 'language');

    const file = path.join(scratch, `${process.pid}-${served + inFlight}-${Date.now()}`);
    writeFileSync(file, audio.data);
    const left = new AbortController();
    res.once('close', () => left.abort());
    const mine = turn.then(async () => {
      if (left.signal.aborted) return null;
      const job = context.transcribeFile(file, {
        maxThreads: threads,
        ...(language ? { language } : {}),
        ...(fields['prompt'] ? { prompt: fields['prompt'] } : {}),
        // As vLLM serves Whisper: one decode at the asked temperature (default 0), no fallback to higher ones.
        temperature: temperature ?? 0,
        temperatureInc: 0,
      });
      // The client left: whisper.cpp stops, and the next one goes on at once (a cancelled job's promise
      // never settles: the binding reports its cancellation as the error it drops).
      let stop = () => undefined as void;
      const leaving = new Promise<null>((resolve) => {
        stop = () => {
          void job.stop().catch(() => undefined);
          resolve(null);
        };
      });
      left.signal.addEventListener('abort', stop, { once: true });
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          job.promise,
          leaving,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`the transcription did not finish within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
      } finally {
        clearTimeout(timer);
        left.signal.removeEventListener('abort', stop);
      }
    });
    turn = mine.catch(() => undefined);
    let result;
    try {
      result = await mine;
    } catch (error) {
      const message = (error as Error).message;
      // whisper.cpp could not decode the file: the caller's input.
      if (/load audio|decode/i.test(message))
        return sendError(res, 400, `The audio file could not be decoded (${audio.filename}): use WAV, MP3 or FLAC`, 'file');
      return sendError(res, 500, `The transcription failed: ${message}`);
    } finally {
      rmSync(file, { force: true });
    }
    if (!result || res.destroyed) return;
    const known = wavDuration(audio.data);
    const lastEnd = result.segments.reduce((end, segment) => Math.max(end, segment.t1 / 1000), 0);
    const duration = known ?? lastEnd;
    // A random model's timestamps may run past the audio: they are kept within it.
    const clamp = (seconds: number) => Math.min(Math.max(0, seconds), duration);
    const segments: TranscriptSegment[] = result.segments.map((segment) => ({
      start: clamp(segment.t0 / 1000),
      end: clamp(segment.t1 / 1000),
      text: segment.text,
    }));
    const code = result.language ?? language ?? 'en';
    const answer = formatTranscript(format, { text: result.result, duration, language: LANGUAGE_NAMES[code] ?? code, segments });
    res.writeHead(200, { 'content-type': answer.contentType });
    res.end(answer.body);
  }

  const server = http.createServer((req, res) => {
    const url = req.url?.split('?')[0] ?? '/';
    if (req.method === 'GET' && url === '/health') return sendJson(res, closing ? 503 : 200, { status: closing ? 'closing' : 'ok' });
    if (req.method === 'GET' && url === '/metrics') return sendJson(res, 200, { inFlight, served });
    if (req.method === 'GET' && url === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: [{ id: options.modelId, object: 'model', created: 0, owned_by: 'mariner' }] });
    }
    if (req.method === 'POST' && url === '/v1/audio/transcriptions') {
      if (closing) return sendError(res, 503, 'The runtime is shutting down');
      inFlight++;
      return void transcribe(req, res)
        .catch((error: Error) => {
          if (!res.headersSent) sendError(res, 500, error.message);
        })
        .finally(() => {
          inFlight--;
          served++;
        });
    }
    req.resume();
    sendError(res, 404, `${req.method} ${url} is not served by this runtime (a transcription model: POST /v1/audio/transcriptions)`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      closing = true;
      server.close();
      const deadline = Date.now() + (options.drainMs ?? 10_000);
      while (inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      server.closeAllConnections();
      await context.release().catch(() => undefined);
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'model-id': { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      threads: { type: 'string' },
      'exit-on-stdin-close': { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.model || !values['model-id'])
    throw new Error('usage: whisperServer --model <ggml-*.bin> --model-id <id> [--port 0] [--host 127.0.0.1] [--threads N]');
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isSafeInteger(threads) && threads >= 1)) throw new Error('--threads must be an integer ≥ 1');
  const port = Number(values.port);
  if (!Number.isSafeInteger(port) || port < 0) throw new Error('--port must be an integer ≥ 0');
  const server = await startWhisperServer({ modelPath: values.model, modelId: values['model-id'], host: values.host, port, ...(threads ? { threads } : {}) });
  const shutdown = () =>
    void server.close().then(
      () => process.exit(0),
      (error: Error) => {
        process.stderr.write(`shutdown failed: ${error.message}\n`);
        process.exit(1);
      },
    );
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  if (values['exit-on-stdin-close']) process.stdin.on('end', shutdown).on('error', shutdown).resume();
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.port })}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: Error) => {
    process.stderr.write(`whisperServer: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
}
