import { describe, expect, it } from 'vitest';
import { MarinerError } from '../../../lib/errors.js';
import { chunkingStrategyOf, chunkText, DEFAULT_CHUNKING } from './chunking.js';
import { extractText, htmlToText, IngestionError } from './extract.js';

describe('static chunking', () => {
  it('defaults to 800 tokens with 400 overlap (OpenAI), and checks the limits', () => {
    expect(chunkingStrategyOf(null)).toEqual({ maxChunkSizeTokens: 800, chunkOverlapTokens: 400 });
    expect(chunkingStrategyOf({ type: 'auto' })).toEqual(DEFAULT_CHUNKING);
    expect(chunkingStrategyOf({ type: 'static', maxChunkSizeTokens: 100, chunkOverlapTokens: 50 })).toEqual({
      maxChunkSizeTokens: 100,
      chunkOverlapTokens: 50,
    });
    const refused = (input: Parameters<typeof chunkingStrategyOf>[0]) => {
      try {
        chunkingStrategyOf(input);
      } catch (error) {
        return (error as MarinerError).extensions;
      }
      return null;
    };
    expect(refused({ type: 'static', maxChunkSizeTokens: 99, chunkOverlapTokens: 0 })).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'chunkingStrategy.maxChunkSizeTokens',
    });
    expect(refused({ type: 'static', maxChunkSizeTokens: 4097, chunkOverlapTokens: 0 })).toMatchObject({ field: 'chunkingStrategy.maxChunkSizeTokens' });
    expect(refused({ type: 'static', maxChunkSizeTokens: 200, chunkOverlapTokens: 101 })).toMatchObject({ field: 'chunkingStrategy.chunkOverlapTokens' });
    expect(refused({ type: 'static', maxChunkSizeTokens: 200 })).toMatchObject({ field: 'chunkingStrategy' });
    expect(refused({ type: 'fancy' })).toMatchObject({ field: 'chunkingStrategy.type' });
  });

  it('chunks are at most the size, neighbours overlap by about the overlap, and nothing is lost', () => {
    const words = Array.from({ length: 3000 }, (_, i) => `w${i}`);
    const text = words.join(' ');
    const chunks = chunkText(text, { maxChunkSizeTokens: 100, chunkOverlapTokens: 40 });
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(400);
    // Every word is in some chunk, in order.
    const seen = new Set(chunks.flatMap((c) => c.split(' ')));
    for (const w of words) expect(seen.has(w)).toBe(true);
    // The overlap: each chunk starts with words the previous one ended with (≤ 160 characters of them).
    for (let i = 1; i < chunks.length; i++) {
      const firstWord = chunks[i]!.split(' ')[0]!;
      const tail = chunks[i - 1]!.slice(-170);
      expect(tail.includes(firstWord)).toBe(true);
    }
    // No overlap asked: none given.
    const plain = chunkText(text, { maxChunkSizeTokens: 100, chunkOverlapTokens: 0 });
    expect(plain.join(' ')).toBe(text);
  });

  it('keeps paragraphs whole where they fit, and cuts text without spaces by characters', () => {
    const text = 'First paragraph.\n\nSecond paragraph.\n\n' + 'x'.repeat(1000);
    const chunks = chunkText(text, { maxChunkSizeTokens: 100, chunkOverlapTokens: 0 });
    expect(chunks[0]).toBe('First paragraph.\n\nSecond paragraph.');
    expect(chunks.slice(1).join('')).toBe('x'.repeat(1000));
    expect(chunkText('   \n\n  ', DEFAULT_CHUNKING)).toEqual([]);
  });
});

describe('text extraction', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  it('html: text only, entities decoded, blocks as paragraphs', () => {
    expect(htmlToText('<p>a &amp; b</p><script>x()</script><div>c&#33;</div><!-- no -->')).toBe('a & b\n\nc!');
  });

  it('json and jsonl are checked and re-printed; bad ones are invalid_file', async () => {
    expect(await extractText('a.json', bytes('{"k":[1,2]}'))).toContain('"k": [');
    expect(await extractText('a.jsonl', bytes('{"a":1}\n\n{"b":2}\n'))).toBe('{"a":1}\n\n{"b":2}');
    await expect(extractText('a.jsonl', bytes('{"a":1}\nnope'))).rejects.toMatchObject({ code: 'invalid_file', message: expect.stringContaining('line 2') });
    await expect(extractText('a.json', bytes('{'))).rejects.toBeInstanceOf(IngestionError);
  });

  it('refuses other kinds, bad UTF-8 and empty text', async () => {
    await expect(extractText('a.docx', bytes('x'))).rejects.toMatchObject({ code: 'unsupported_file' });
    await expect(extractText('noext', bytes('x'))).rejects.toMatchObject({ code: 'unsupported_file' });
    await expect(extractText('a.txt', new Uint8Array([0xff, 0xfe, 0x00]))).rejects.toMatchObject({ code: 'invalid_file' });
    await expect(extractText('a.md', bytes(' \n '))).rejects.toMatchObject({ code: 'invalid_file' });
  });
});
