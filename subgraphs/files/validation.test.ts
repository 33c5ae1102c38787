import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { validateFineTuneJsonl } from './validation.js';

const example = JSON.stringify({
  messages: [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'hello' },
  ],
});

describe('fine-tuning file validation', () => {
  it('a line longer than the limit is refused with its number before the rest of it is read', async () => {
    let sent = 0;
    // A second line that never ends: the old readline-based check buffered it until memory ran out.
    const endless = new Readable({
      read() {
        if (sent === 0) this.push(`${example}\n`);
        else this.push(Buffer.alloc(64 * 1024, 'a'));
        sent++;
      },
    });
    const error = await validateFineTuneJsonl(endless, 1024 * 1024).catch((e: unknown) => e);
    expect(error).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    expect((error as Error).message).toBe('file: line 2 is longer than 1048576 bytes, the most one fine-tuning example may have');
    expect(sent).toBeLessThan(40);
    expect(endless.destroyed).toBe(true);
  });

  it('lines split across chunks, CRLF endings and a last line without a newline all count', async () => {
    const text = `${example}\r\n\r\n${example}\n${example}`;
    const chunks = [...Buffer.from(text)].map((byte) => Buffer.from([byte]));
    expect(await validateFineTuneJsonl(Readable.from(chunks), 1024)).toEqual({ examples: 3 });
    const utf8 = JSON.stringify({ prompt: 'żółw 🐢', completion: '亀' });
    const split = Buffer.from(`${utf8}\n`);
    expect(await validateFineTuneJsonl(Readable.from([split.subarray(0, 12), split.subarray(12)]), 1024)).toEqual({ examples: 1 });
  });

  it('a line of exactly the limit passes', async () => {
    const padded = JSON.stringify({ prompt: 'p', completion: '' });
    const line = padded.replace('""', `"${'x'.repeat(200 - padded.length)}"`);
    expect(Buffer.byteLength(line)).toBe(200);
    expect(await validateFineTuneJsonl(Readable.from([`${line}\n`]), 200)).toEqual({ examples: 1 });
    await expect(validateFineTuneJsonl(Readable.from([`${line}x\n`]), 200)).rejects.toThrow('line 1 is longer than 200 bytes');
  });
});
