import { writeFileSync } from 'node:fs';

/**
 * A tiny llama-architecture model as a GGUF v3 file (~0.35 MB): random, seeded weights that llama.cpp
 * (node-llama-cpp) loads, generates gibberish with and embeds with. No model can be downloaded here,
 * so every test that needs a real runtime writes one of these.
 *
 * Layout (GGUF spec, ggml/docs/gguf.md): header (magic, version 3, tensor count, metadata count),
 * metadata key/values, tensor infos, then the tensor data, each tensor aligned to 32 bytes.
 *
 * Vocabulary (SentencePiece-style, `tokenizer.ggml.model = llama`): `<unk>`, `<s>`, `</s>`, the 256
 * byte tokens `<0x00>`..`<0xFF>` (so any text tokenizes), `▁` (the SentencePiece space) and the 94
 * printable ASCII characters. Every token string is unique: llama.cpp aborts on duplicates.
 *
 * The output layer is shaped so that generation never ends early and always yields printable text:
 * dimension 0 of the residual stream is a constant positive value (token embeddings hold 1 there and no
 * layer writes to it), and the output rows of the control and byte tokens weigh that dimension strongly
 * negative, while the printable tokens get random rows with large logits. Tests can therefore count on
 * non-empty, valid UTF-8 output and on `max_tokens` being what stops a generation.
 */
export const TINY_GGUF = {
  embeddingLength: 64,
  blockCount: 2,
  headCount: 4,
  feedForwardLength: 128,
  contextLength: 512,
  bosTokenId: 1,
  eosTokenId: 2,
} as const;

export interface TinyGgufOptions {
  /** Seeds the weights: the same seed writes the same file. Default 1. */
  seed?: number;
  /** `general.name`. Default `tiny-llama`. */
  name?: string;
  /** `llama.context_length`, the longest context the model takes. Default 512. */
  contextLength?: number;
}

// GGUF metadata value types (gguf.md: enum gguf_metadata_value_type).
const enum ValueType {
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
}
// ggml tensor types (ggml.h: enum ggml_type).
const GGML_F32 = 0;
const GGML_F16 = 1;
// llama.cpp token types (llama.h: enum llama_token_type).
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;
const ALIGNMENT = 32;

type MetadataValue =
  | { type: ValueType.UINT32 | ValueType.INT32 | ValueType.FLOAT32; value: number }
  | { type: ValueType.BOOL; value: boolean }
  | { type: ValueType.STRING; value: string }
  | { type: ValueType.ARRAY; of: ValueType.STRING; value: string[] }
  | { type: ValueType.ARRAY; of: ValueType.FLOAT32 | ValueType.INT32; value: number[] };

interface Tensor {
  name: string;
  /** ggml order: dims[0] is the innermost (contiguous) dimension. */
  dims: number[];
  type: typeof GGML_F32 | typeof GGML_F16;
  values: Float32Array;
}

/** Writes the tiny model to `path`. */
export function writeTinyGguf(path: string, options: TinyGgufOptions = {}): void {
  writeFileSync(path, tinyGguf(options));
}

/** The tiny model's bytes. */
export function tinyGguf(options: TinyGgufOptions = {}): Buffer {
  const { embeddingLength: nEmbd, blockCount, headCount, feedForwardLength: nFf } = TINY_GGUF;
  const contextLength = options.contextLength ?? TINY_GGUF.contextLength;
  const random = normalRandom(options.seed ?? 1);

  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TOKEN_BYTE);
  }
  const firstPrintable = tokens.length;
  tokens.push('\u2581');
  types.push(TOKEN_NORMAL);
  for (let code = 0x21; code <= 0x7e; code++) {
    tokens.push(String.fromCharCode(code));
    types.push(TOKEN_NORMAL);
  }
  const nVocab = tokens.length;
  if (new Set(tokens).size !== nVocab) throw new Error('tiny GGUF: duplicate token strings');

  const gaussian = (count: number, std: number) => Float32Array.from({ length: count }, () => random() * std);
  const ones = (count: number) => new Float32Array(count).fill(1);
  /** A [nIn → nOut] projection (ggml dims [nIn, nOut]), optionally never writing output row 0. */
  const projection = (nIn: number, nOut: number, keepDim0 = false) => {
    const values = gaussian(nIn * nOut, 1 / Math.sqrt(nIn));
    if (keepDim0) values.fill(0, 0, nIn);
    return values;
  };

  const embeddings = gaussian(nEmbd * nVocab, 1);
  for (let token = 0; token < nVocab; token++) embeddings[token * nEmbd] = 1;
  const output = gaussian(nEmbd * nVocab, 1);
  for (let token = 0; token < nVocab; token++) {
    if (token < firstPrintable) {
      output.fill(0, token * nEmbd, (token + 1) * nEmbd);
      output[token * nEmbd] = -50;
    } else output[token * nEmbd] = 0;
  }

  const tensors: Tensor[] = [
    { name: 'token_embd.weight', dims: [nEmbd, nVocab], type: GGML_F32, values: embeddings },
    { name: 'output_norm.weight', dims: [nEmbd], type: GGML_F32, values: ones(nEmbd) },
    { name: 'output.weight', dims: [nEmbd, nVocab], type: GGML_F32, values: output },
  ];
  for (let block = 0; block < blockCount; block++) {
    const blk = `blk.${block}`;
    tensors.push(
      { name: `${blk}.attn_norm.weight`, dims: [nEmbd], type: GGML_F32, values: ones(nEmbd) },
      { name: `${blk}.attn_q.weight`, dims: [nEmbd, nEmbd], type: GGML_F16, values: projection(nEmbd, nEmbd) },
      { name: `${blk}.attn_k.weight`, dims: [nEmbd, nEmbd], type: GGML_F16, values: projection(nEmbd, nEmbd) },
      { name: `${blk}.attn_v.weight`, dims: [nEmbd, nEmbd], type: GGML_F16, values: projection(nEmbd, nEmbd) },
      { name: `${blk}.attn_output.weight`, dims: [nEmbd, nEmbd], type: GGML_F16, values: projection(nEmbd, nEmbd, true) },
      { name: `${blk}.ffn_norm.weight`, dims: [nEmbd], type: GGML_F32, values: ones(nEmbd) },
      { name: `${blk}.ffn_gate.weight`, dims: [nEmbd, nFf], type: GGML_F16, values: projection(nEmbd, nFf) },
      { name: `${blk}.ffn_up.weight`, dims: [nEmbd, nFf], type: GGML_F16, values: projection(nEmbd, nFf) },
      { name: `${blk}.ffn_down.weight`, dims: [nFf, nEmbd], type: GGML_F16, values: projection(nFf, nEmbd, true) },
    );
  }

  const metadata: [string, MetadataValue][] = [
    ['general.architecture', { type: ValueType.STRING, value: 'llama' }],
    ['general.name', { type: ValueType.STRING, value: options.name ?? 'tiny-llama' }],
    ['general.alignment', { type: ValueType.UINT32, value: ALIGNMENT }],
    // LLAMA_FTYPE_MOSTLY_F16: the matrices are F16, the norms and embeddings F32.
    ['general.file_type', { type: ValueType.UINT32, value: 1 }],
    ['llama.context_length', { type: ValueType.UINT32, value: contextLength }],
    ['llama.embedding_length', { type: ValueType.UINT32, value: nEmbd }],
    ['llama.block_count', { type: ValueType.UINT32, value: blockCount }],
    ['llama.feed_forward_length', { type: ValueType.UINT32, value: nFf }],
    ['llama.attention.head_count', { type: ValueType.UINT32, value: headCount }],
    ['llama.attention.head_count_kv', { type: ValueType.UINT32, value: headCount }],
    ['llama.attention.layer_norm_rms_epsilon', { type: ValueType.FLOAT32, value: 1e-5 }],
    ['llama.rope.dimension_count', { type: ValueType.UINT32, value: nEmbd / headCount }],
    ['llama.rope.freq_base', { type: ValueType.FLOAT32, value: 10000 }],
    ['llama.vocab_size', { type: ValueType.UINT32, value: nVocab }],
    ['tokenizer.ggml.model', { type: ValueType.STRING, value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: ValueType.ARRAY, of: ValueType.STRING, value: tokens }],
    ['tokenizer.ggml.scores', { type: ValueType.ARRAY, of: ValueType.FLOAT32, value: tokens.map(() => 0) }],
    ['tokenizer.ggml.token_type', { type: ValueType.ARRAY, of: ValueType.INT32, value: types }],
    ['tokenizer.ggml.unknown_token_id', { type: ValueType.UINT32, value: 0 }],
    ['tokenizer.ggml.bos_token_id', { type: ValueType.UINT32, value: TINY_GGUF.bosTokenId }],
    ['tokenizer.ggml.eos_token_id', { type: ValueType.UINT32, value: TINY_GGUF.eosTokenId }],
    ['tokenizer.ggml.add_bos_token', { type: ValueType.BOOL, value: true }],
    ['tokenizer.ggml.add_eos_token', { type: ValueType.BOOL, value: false }],
  ];

  return writeGguf(metadata, tensors);
}

export interface TinyLoraOptions {
  /** Seeds the adapter's values: the same seed writes the same file. Default 7. */
  seed?: number;
  /** The LoRA rank. Default 4. */
  rank?: number;
  /** `adapter.lora.alpha`: the update is scaled by alpha / rank. Default 8. */
  alpha?: number;
  /** `general.name`. Default `tiny-llama-lora`. */
  name?: string;
}

/**
 * A LoRA adapter for the tiny model ({@link tinyGguf}) as a GGUF file, as llama.cpp's adapter loader
 * (src/llama-adapter.cpp `llama_adapter_lora_init_impl`) reads one: `general.type = adapter`,
 * `adapter.type = lora`, `adapter.lora.alpha`, the base model's `general.architecture`, and per adapted
 * weight `W` (ggml dims [n_in, n_out]) a pair `<W name>.lora_a` with ggml dims [n_in, rank] and
 * `<W name>.lora_b` with ggml dims [rank, n_out] (llama.cpp checks `W.ne[0] == a.ne[0]`,
 * `W.ne[1] == b.ne[1]` and `a.ne[1] == b.ne[0]`); W' = W + (alpha / rank) · B·A.
 *
 * Random, seeded values (the demo trainer trains nothing) on each block's attention query and on the
 * output layer, large enough that generation visibly changes. The output rows of the control and byte
 * tokens get no update, so the tiny model's promise holds with the adapter too: printable text, and
 * `max_tokens` is what stops a generation.
 */
export function tinyLoraGguf(options: TinyLoraOptions = {}): Buffer {
  const { embeddingLength: nEmbd, blockCount } = TINY_GGUF;
  const rank = options.rank ?? 4;
  const random = normalRandom(options.seed ?? 7);
  const gaussian = (count: number, std: number) => Float32Array.from({ length: count }, () => random() * std);
  // 3 control + 256 byte tokens, then the SentencePiece space and the 94 printable characters.
  const firstPrintable = 3 + 256;
  const nVocab = firstPrintable + 1 + 94;
  const outputB = gaussian(rank * nVocab, 1);
  outputB.fill(0, 0, rank * firstPrintable);
  const tensors: Tensor[] = [
    { name: 'output.weight.lora_a', dims: [nEmbd, rank], type: GGML_F32, values: gaussian(nEmbd * rank, 1 / Math.sqrt(nEmbd)) },
    { name: 'output.weight.lora_b', dims: [rank, nVocab], type: GGML_F32, values: outputB },
  ];
  for (let block = 0; block < blockCount; block++) {
    tensors.push(
      { name: `blk.${block}.attn_q.weight.lora_a`, dims: [nEmbd, rank], type: GGML_F32, values: gaussian(nEmbd * rank, 1 / Math.sqrt(nEmbd)) },
      { name: `blk.${block}.attn_q.weight.lora_b`, dims: [rank, nEmbd], type: GGML_F32, values: gaussian(rank * nEmbd, 1) },
    );
  }
  const metadata: [string, MetadataValue][] = [
    ['general.architecture', { type: ValueType.STRING, value: 'llama' }],
    ['general.type', { type: ValueType.STRING, value: 'adapter' }],
    ['general.name', { type: ValueType.STRING, value: options.name ?? 'tiny-llama-lora' }],
    ['general.alignment', { type: ValueType.UINT32, value: ALIGNMENT }],
    ['adapter.type', { type: ValueType.STRING, value: 'lora' }],
    ['adapter.lora.alpha', { type: ValueType.FLOAT32, value: options.alpha ?? 8 }],
  ];
  return writeGguf(metadata, tensors);
}

/** A GGUF v3 file of these metadata and tensors. */
function writeGguf(metadata: [string, MetadataValue][], tensors: Tensor[]): Buffer {
  const out = new ByteWriter();
  out.raw(Buffer.from('GGUF', 'ascii'));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(metadata.length);
  for (const [key, entry] of metadata) {
    out.string(key);
    out.u32(entry.type);
    writeValue(out, entry);
  }
  let offset = 0;
  for (const tensor of tensors) {
    out.string(tensor.name);
    out.u32(tensor.dims.length);
    for (const dim of tensor.dims) out.u64(dim);
    out.u32(tensor.type);
    out.u64(offset);
    offset = align(offset + tensor.values.length * (tensor.type === GGML_F32 ? 4 : 2));
  }
  out.pad();
  for (const tensor of tensors) {
    if (tensor.type === GGML_F32) for (const value of tensor.values) out.f32(value);
    else for (const value of tensor.values) out.u16(toHalf(value));
    out.pad();
  }
  return out.bytes();
}

function writeValue(out: ByteWriter, entry: MetadataValue): void {
  switch (entry.type) {
    case ValueType.UINT32:
      return out.u32(entry.value);
    case ValueType.INT32:
      return out.i32(entry.value);
    case ValueType.FLOAT32:
      return out.f32(entry.value);
    case ValueType.BOOL:
      return out.u8(entry.value ? 1 : 0);
    case ValueType.STRING:
      return out.string(entry.value);
    case ValueType.ARRAY:
      out.u32(entry.of);
      out.u64(entry.value.length);
      for (const item of entry.value) {
        if (entry.of === ValueType.STRING) out.string(item as string);
        else if (entry.of === ValueType.FLOAT32) out.f32(item as number);
        else out.i32(item as number);
      }
  }
}

const align = (n: number) => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

/** Little-endian writer into growing chunks. */
class ByteWriter {
  private chunks: Buffer[] = [];
  private current = Buffer.alloc(1 << 16);
  private used = 0;
  private total = 0;

  private room(n: number): Buffer {
    if (this.used + n > this.current.length) {
      this.chunks.push(this.current.subarray(0, this.used));
      this.current = Buffer.alloc(Math.max(1 << 16, n));
      this.used = 0;
    }
    return this.current;
  }
  private advance(n: number): void {
    this.used += n;
    this.total += n;
  }
  u8(v: number): void {
    this.room(1).writeUInt8(v, this.used);
    this.advance(1);
  }
  u16(v: number): void {
    this.room(2).writeUInt16LE(v, this.used);
    this.advance(2);
  }
  u32(v: number): void {
    this.room(4).writeUInt32LE(v, this.used);
    this.advance(4);
  }
  i32(v: number): void {
    this.room(4).writeInt32LE(v, this.used);
    this.advance(4);
  }
  u64(v: number): void {
    this.room(8).writeBigUInt64LE(BigInt(v), this.used);
    this.advance(8);
  }
  f32(v: number): void {
    this.room(4).writeFloatLE(v, this.used);
    this.advance(4);
  }
  raw(bytes: Buffer): void {
    bytes.copy(this.room(bytes.length), this.used);
    this.advance(bytes.length);
  }
  /** A gguf_string: u64 byte length, then UTF-8 bytes (no terminator). */
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.raw(bytes);
  }
  /** Zero bytes up to the next multiple of the alignment. */
  pad(): void {
    const n = align(this.total) - this.total;
    if (n > 0) this.raw(Buffer.alloc(n));
  }
  bytes(): Buffer {
    return Buffer.concat([...this.chunks, this.current.subarray(0, this.used)]);
  }
}

/** IEEE 754 binary16 bits of a float (round to nearest; subnormals flushed to zero: the weights are ~N(0, 0.1)). */
function toHalf(value: number): number {
  const f32 = new Float32Array([value]);
  const bits = new Uint32Array(f32.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  let mantissa = bits & 0x7fffff;
  if (exponent <= 0) return sign;
  if (exponent >= 0x1f) return sign | 0x7c00;
  mantissa += 0x1000; // round half up at bit 13
  if (mantissa & 0x800000) return exponent + 1 >= 0x1f ? sign | 0x7c00 : sign | ((exponent + 1) << 10);
  return sign | (exponent << 10) | (mantissa >>> 13);
}

/** Standard normal samples from a seeded PRNG (mulberry32 + Box-Muller). */
function normalRandom(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
