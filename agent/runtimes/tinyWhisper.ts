/**
 * A tiny Whisper model in whisper.cpp's ggml format (what `ggml-*.bin` models are), generated in code
 * like tinyGguf.ts's LLM: random weights, so it transcribes any audio to gibberish, quickly, on any CPU
 * (about 0.3 s for a short clip). The tests and `--demo-model` use it to exercise the whole
 * transcription path with no download.
 *
 * The layout is whisper.cpp's `whisper_model_load` (src/whisper.cpp): the magic `ggml`, eleven int32
 * hyperparameters, the mel filter bank, the vocabulary, then tensors (n_dims, name length, type, the
 * dims innermost first, the name, the data). The dimensions are the smallest that decode sensibly: one
 * encoder and one decoder layer of width 8, two heads, the English-only vocabulary size (51864: the
 * special and timestamp tokens sit at fixed ids above 50256), Whisper's 30-s audio context (1500) and
 * 80 mel bins, f32 weights. The vocabulary needs a `" "` token (whisper.cpp suppresses it by name).
 */

const GGML_MAGIC = 0x67676d6c;
const N_VOCAB = 51864;
const N_TEXT_TOKENS = 50256;
const N_AUDIO_CTX = 1500;
const N_TEXT_CTX = 448;
const N_MELS = 80;
/** Whisper's FFT bins: 1 + 400/2. */
const N_FFT = 201;

export interface TinyWhisperOptions {
  /** Model width (default 8); heads are 2, so even. */
  width?: number;
  /** Seed of the weights (default 1). */
  seed?: number;
}

/** The model file's bytes (about 2.3 MB). */
export function tinyWhisperModel(options: TinyWhisperOptions = {}): Buffer {
  const width = options.width ?? 8;
  if (!Number.isInteger(width) || width < 2 || width % 2 !== 0) throw new Error('width must be an even integer ≥ 2');
  let seed = (options.seed ?? 1) >>> 0;
  const random = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed / 2 ** 32 - 0.5) * 0.2;
  };
  const parts: Buffer[] = [];
  const ints = (...values: number[]) => {
    const buffer = Buffer.alloc(4 * values.length);
    values.forEach((value, i) => buffer.writeInt32LE(value, 4 * i));
    parts.push(buffer);
  };
  const floats = (count: number, fill?: number) => {
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = fill ?? random();
    parts.push(Buffer.from(values.buffer));
  };

  ints(GGML_MAGIC);
  // n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype (0: f32)
  ints(N_VOCAB, N_AUDIO_CTX, width, 2, 1, N_TEXT_CTX, width, 2, 1, N_MELS, 0);
  ints(N_MELS, N_FFT);
  floats(N_MELS * N_FFT, 0.01);
  // The text tokens: short made-up words (whisper.cpp names the special tokens above them itself).
  ints(N_TEXT_TOKENS);
  for (let i = 0; i < N_TEXT_TOKENS; i++) {
    const word = Buffer.from(i === 220 ? ' ' : ` ${syllable(i)}${syllable(i >> 6)}`);
    ints(word.length);
    parts.push(word);
  }

  const tensor = (name: string, dims: number[], fill?: number) => {
    const bytes = Buffer.from(name);
    ints(dims.length, bytes.length, 0);
    ints(...dims);
    parts.push(bytes);
    floats(
      dims.reduce((a, b) => a * b, 1),
      fill,
    );
  };
  const norm = (prefix: string) => {
    tensor(`${prefix}.weight`, [width], 1);
    tensor(`${prefix}.bias`, [width], 0);
  };
  const block = (prefix: string, cross: boolean) => {
    norm(`${prefix}.mlp_ln`);
    tensor(`${prefix}.mlp.0.weight`, [width, 4 * width]);
    tensor(`${prefix}.mlp.0.bias`, [4 * width]);
    tensor(`${prefix}.mlp.2.weight`, [4 * width, width]);
    tensor(`${prefix}.mlp.2.bias`, [width]);
    for (const attention of cross ? ['attn', 'cross_attn'] : ['attn']) {
      norm(`${prefix}.${attention}_ln`);
      tensor(`${prefix}.${attention}.query.weight`, [width, width]);
      tensor(`${prefix}.${attention}.query.bias`, [width]);
      tensor(`${prefix}.${attention}.key.weight`, [width, width]);
      tensor(`${prefix}.${attention}.value.weight`, [width, width]);
      tensor(`${prefix}.${attention}.value.bias`, [width]);
      tensor(`${prefix}.${attention}.out.weight`, [width, width]);
      tensor(`${prefix}.${attention}.out.bias`, [width]);
    }
  };
  tensor('encoder.positional_embedding', [width, N_AUDIO_CTX]);
  tensor('encoder.conv1.weight', [3, N_MELS, width]);
  tensor('encoder.conv1.bias', [1, width]);
  tensor('encoder.conv2.weight', [3, width, width]);
  tensor('encoder.conv2.bias', [1, width]);
  norm('encoder.ln_post');
  block('encoder.blocks.0', false);
  tensor('decoder.positional_embedding', [width, N_TEXT_CTX]);
  tensor('decoder.token_embedding.weight', [width, N_VOCAB]);
  norm('decoder.ln');
  block('decoder.blocks.0', true);
  return Buffer.concat(parts);
}

const CONSONANTS = 'bdfgklmnprstvz';
const VOWELS = 'aeiou';
/** A pronounceable syllable for a number. */
function syllable(n: number): string {
  return `${CONSONANTS[n % CONSONANTS.length]}${VOWELS[Math.floor(n / CONSONANTS.length) % VOWELS.length]}`;
}

/** A WAV file (PCM, 16-bit, mono) of a sine tone: something to transcribe. */
export function toneWav(options: { ms?: number; hz?: number; sampleRate?: number } = {}): Buffer {
  const sampleRate = options.sampleRate ?? 16_000;
  const samples = Math.round((sampleRate * (options.ms ?? 500)) / 1000);
  const hz = options.hz ?? 440;
  const wav = Buffer.alloc(44 + 2 * samples);
  wav.write('RIFF', 0, 'ascii');
  wav.writeUInt32LE(36 + 2 * samples, 4);
  wav.write('WAVEfmt ', 8, 'ascii');
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(sampleRate, 24);
  wav.writeUInt32LE(sampleRate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36, 'ascii');
  wav.writeUInt32LE(2 * samples, 40);
  for (let i = 0; i < samples; i++) wav.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / sampleRate)), 44 + 2 * i);
  return wav;
}
