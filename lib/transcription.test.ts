import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { toneWav } from '../agent/runtimes/tinyWhisper.js';
import { wavDuration } from '../agent/runtimes/whisperServer.js';
import { MarinerError } from './errors.js';
import { encodeTranscriptionForm, formatTranscript, readTranscriptionForm, subtitleTime, toSrt, toVtt, type Transcript } from './transcription.js';

const transcript: Transcript = {
  text: ' Hello there. General Kenobi!',
  duration: 3725.5,
  language: 'english',
  segments: [
    { start: 0, end: 1.5, text: ' Hello there.' },
    { start: 3723.004, end: 3725.5, text: ' General Kenobi!' },
  ],
};

describe('transcript formats (OpenAI whisper answers)', () => {
  it('subtitle times: hours, minutes, seconds and milliseconds, with SubRip’s comma or WebVTT’s dot', () => {
    expect(subtitleTime(0, ',')).toBe('00:00:00,000');
    expect(subtitleTime(1.5, '.')).toBe('00:00:01.500');
    expect(subtitleTime(3723.004, ',')).toBe('01:02:03,004');
    expect(subtitleTime(59.9996, '.')).toBe('00:01:00.000');
    expect(subtitleTime(-1, ',')).toBe('00:00:00,000');
  });

  it('srt: numbered cues from 1, each ending with a blank line', () => {
    expect(toSrt(transcript.segments)).toBe('1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:02:03,004 --> 01:02:05,500\nGeneral Kenobi!\n\n');
    expect(toSrt([])).toBe('');
  });

  it('vtt: the WEBVTT header, then unnumbered cues', () => {
    expect(toVtt(transcript.segments)).toBe('WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n01:02:03.004 --> 01:02:05.500\nGeneral Kenobi!\n\n');
    expect(toVtt([])).toBe('WEBVTT\n\n');
  });

  it('json, verbose_json and text, with their content types; usage in whole seconds', () => {
    const json = formatTranscript('json', transcript);
    expect(json.contentType).toBe('application/json');
    expect(JSON.parse(json.body)).toEqual({ text: 'Hello there. General Kenobi!', usage: { type: 'duration', seconds: 3726 } });
    const verbose = JSON.parse(formatTranscript('verbose_json', transcript).body);
    expect(verbose).toMatchObject({ task: 'transcribe', language: 'english', duration: 3725.5, text: 'Hello there. General Kenobi!' });
    expect(verbose.segments[1]).toMatchObject({ id: 1, start: 3723.004, end: 3725.5, text: ' General Kenobi!' });
    expect(formatTranscript('text', transcript)).toEqual({ contentType: 'text/plain; charset=utf-8', body: 'Hello there. General Kenobi!\n' });
    expect(formatTranscript('vtt', transcript).contentType).toBe('text/vtt; charset=utf-8');
  });
});

describe('transcription forms', () => {
  it('a form encoded for a runtime reads back the same: fields and file bytes', async () => {
    const audio = { data: toneWav({ ms: 100 }), filename: 'a "quoted" name.wav', contentType: 'audio/wav' };
    const { contentType, body } = encodeTranscriptionForm({ model: 'm', response_format: 'srt', prompt: 'line one\r\nline two' }, audio);
    const form = await readTranscriptionForm({ 'content-type': contentType }, Readable.from([body]));
    expect(form.fields).toEqual({ model: 'm', response_format: 'srt', prompt: 'line one\r\nline two' });
    expect(form.audio!.data.equals(audio.data)).toBe(true);
    expect(form.audio!.contentType).toBe('audio/wav');
  });

  it('a file over the limit, or a body that is not multipart, is BAD_USER_INPUT on the file', async () => {
    const { contentType, body } = encodeTranscriptionForm({ model: 'm' }, { data: Buffer.alloc(1025), filename: 'x.wav', contentType: 'audio/wav' });
    const tooBig = await readTranscriptionForm({ 'content-type': contentType }, Readable.from([body]), 1024).catch((e: unknown) => e);
    expect(tooBig).toBeInstanceOf(MarinerError);
    expect((tooBig as MarinerError).extensions['field']).toBe('file');
    await expect(readTranscriptionForm({ 'content-type': 'application/json' }, Readable.from([Buffer.from('{}')]))).rejects.toThrow(/multipart/);
  });

  it('a WAV file’s duration comes from its header; other bytes have none', () => {
    expect(wavDuration(toneWav({ ms: 500 }))).toBe(0.5);
    expect(wavDuration(toneWav({ ms: 250, sampleRate: 8000 }))).toBe(0.25);
    expect(wavDuration(Buffer.from('ID3 not a wav file at all, but long enough to have a header'))).toBeNull();
  });
});
