import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import busboy from 'busboy';
import { badInput, ErrorCode, MarinerError } from './errors.js';

/**
 * Audio transcriptions (OpenAI API: `POST /v1/audio/transcriptions`), shared by the REST layer (which
 * reads the client's form), the data plane (which carries it to the inference component and on to a
 * runtime) and the local transcription runtime (agent/runtimes/whisperServer.ts, which writes each
 * answer format from whisper.cpp's timed segments).
 */

/** OpenAI's answer formats for whisper models. */
export const TRANSCRIPTION_FORMATS = ['json', 'text', 'verbose_json', 'srt', 'vtt'] as const;
export type TranscriptionFormat = (typeof TRANSCRIPTION_FORMATS)[number];

/** A Whisper model file in whisper.cpp's ggml format, by whisper.cpp's naming (`ggml-base.en.bin`): format WHISPER_GGML. */
export const isWhisperGgmlName = (name: string): boolean => /(^|\/)ggml-[^/]*\.bin$/i.test(name);

/** OpenAI's upload limit: 25 MB. */
export const MAX_AUDIO_BYTES = 25 * 1024 * 1024;

export const isTranscriptionFormat = (value: unknown): value is TranscriptionFormat =>
  typeof value === 'string' && (TRANSCRIPTION_FORMATS as readonly string[]).includes(value);

/** A transcription form's whole body at most: the file and room for the text fields and the multipart framing. */
export const MAX_TRANSCRIPTION_FORM_BYTES = MAX_AUDIO_BYTES + 2 * 1024 * 1024;

/** The audio file is over the limit (BAD_USER_INPUT on `file`; the REST layer answers it 413). */
export class AudioTooLargeError extends MarinerError {
  constructor(readonly maxBytes: number) {
    super(ErrorCode.BAD_USER_INPUT, `The audio file is larger than the limit of ${maxBytes} bytes (${Math.round(maxBytes / 1024 / 1024)} MiB)`, {
      field: 'file',
    });
  }
}

/** The uploaded audio file, held once in memory (at most MAX_AUDIO_BYTES). */
export interface AudioUpload {
  data: Buffer;
  filename: string;
  contentType: string;
}

/** A transcription form: its text fields (model, response_format, language, prompt, temperature, ...) and the file. */
export interface TranscriptionForm {
  fields: Record<string, string>;
  audio: AudioUpload | null;
}

/**
 * Reads a multipart/form-data transcription request: the text fields and the one `file` part (others
 * are drained), the file held in memory up to `maxBytes` (the model may come after the file, as the
 * OpenAI SDK sends them, and routing needs it before a runtime is asked). A body that is not
 * multipart, malformed, or with a file over the limit is BAD_USER_INPUT naming the field.
 */
export async function readTranscriptionForm(headers: IncomingHttpHeaders, body: Readable, maxBytes = MAX_AUDIO_BYTES): Promise<TranscriptionForm> {
  if (!/^multipart\/form-data/i.test(headers['content-type'] ?? '')) {
    body.resume();
    throw badInput('Expected a multipart/form-data body with the fields "file" and "model"', 'file');
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers, limits: { files: 1, fields: 20, fieldSize: 64 * 1024, parts: 25, fileSize: maxBytes } });
  } catch (error) {
    body.resume();
    throw badInput(`Malformed multipart body: ${(error as Error).message}`, 'file');
  }
  const fields: Record<string, string> = {};
  let audio: AudioUpload | null = null;
  let pending: Promise<void> | null = null;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (error: Error) => {
      if (failed) return;
      failed = true;
      body.unpipe(parser);
      body.resume();
      reject(error);
    };
    parser.on('field', (name, value) => {
      fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      stream.on('error', () => undefined);
      if (name !== 'file' || pending) return void stream.resume();
      pending = new Promise<void>((done) => {
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on('data', (chunk: Buffer) => {
          size += chunk.length;
          chunks.push(chunk);
        });
        stream.once('limit', () => fail(new AudioTooLargeError(maxBytes)));
        stream.once('end', () => {
          audio = { data: Buffer.concat(chunks, size), filename: info.filename || 'audio', contentType: info.mimeType || 'application/octet-stream' };
          done();
        });
      });
    });
    parser.once('error', (error: Error) => fail(badInput(`Malformed multipart body: ${error.message}`, 'file')));
    parser.once('close', () => void (pending ?? Promise.resolve()).then(() => !failed && resolve()));
    body.once('error', (error) => fail(error));
    body.pipe(parser);
  });
  return { fields, audio };
}

/**
 * A transcription form as one multipart body (for a runtime, or the inference component over HTTP): its
 * text fields (values that are not strings are left out) and the audio file.
 */
export function encodeTranscriptionForm(fields: Record<string, unknown>, audio: AudioUpload): { contentType: string; body: Buffer } {
  const boundary = `mariner-${randomUUID()}`;
  const quote = (value: string) => value.replace(/["\r\n\\]/g, '_');
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value !== 'string') continue;
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${quote(name)}"\r\n\r\n${value}\r\n`));
  }
  parts.push(
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quote(audio.filename)}"\r\nContent-Type: ${quote(audio.contentType)}\r\n\r\n`,
    ),
    audio.data,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  );
  return { contentType: `multipart/form-data; boundary=${boundary}`, body: Buffer.concat(parts) };
}

/** One timed piece of a transcript, in seconds. */
export interface TranscriptSegment {
  start: number;
  end: number;
  text: string;
}

export interface Transcript {
  text: string;
  /** The audio's length in seconds. */
  duration: number;
  /** OpenAI's language name (`english`). */
  language: string;
  segments: TranscriptSegment[];
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** A time as SubRip (`00:01:02,345`) or WebVTT (`00:01:02.345`) writes it. */
export function subtitleTime(seconds: number, separator: ',' | '.'): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${pad(h)}:${pad(m)}:${pad(s)}${separator}${pad(ms % 1000, 3)}`;
}

/** SubRip: numbered cues from 1, `start --> end`, the text, a blank line. */
export function toSrt(segments: readonly TranscriptSegment[]): string {
  return segments
    .map((segment, i) => `${i + 1}\n${subtitleTime(segment.start, ',')} --> ${subtitleTime(segment.end, ',')}\n${segment.text.trim()}\n\n`)
    .join('');
}

/** WebVTT: the `WEBVTT` header, then one cue per segment. */
export function toVtt(segments: readonly TranscriptSegment[]): string {
  return `WEBVTT\n\n${segments.map((segment) => `${subtitleTime(segment.start, '.')} --> ${subtitleTime(segment.end, '.')}\n${segment.text.trim()}\n\n`).join('')}`;
}

/** The usage OpenAI reports for whisper models: the audio's duration, in whole seconds (rounded up). */
export const durationUsage = (duration: number) => ({ type: 'duration' as const, seconds: Math.ceil(duration) });

/** An answer in the asked format, as OpenAI writes it for whisper models. */
export function formatTranscript(format: TranscriptionFormat, transcript: Transcript): { contentType: string; body: string } {
  const text = transcript.text.trim();
  switch (format) {
    case 'json':
      return { contentType: 'application/json', body: JSON.stringify({ text, usage: durationUsage(transcript.duration) }) };
    case 'verbose_json':
      return {
        contentType: 'application/json',
        body: JSON.stringify({
          task: 'transcribe',
          language: transcript.language,
          duration: transcript.duration,
          text,
          segments: transcript.segments.map((segment, id) => ({
            id,
            seek: 0,
            start: segment.start,
            end: segment.end,
            text: segment.text,
            tokens: [],
            temperature: 0,
            avg_logprob: 0,
            compression_ratio: 0,
            no_speech_prob: 0,
          })),
          usage: durationUsage(transcript.duration),
        }),
      };
    case 'text':
      return { contentType: 'text/plain; charset=utf-8', body: `${text}\n` };
    case 'srt':
      return { contentType: 'text/plain; charset=utf-8', body: toSrt(transcript.segments) };
    case 'vtt':
      return { contentType: 'text/vtt; charset=utf-8', body: toVtt(transcript.segments) };
  }
}
