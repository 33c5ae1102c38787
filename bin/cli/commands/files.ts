import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Command } from 'commander';
import type { ApiClient } from '../client.js';
import { CliError, UsageError } from '../errors.js';
import { printData, printList } from '../output.js';
import { run } from '../command.js';
import { listAll } from '../pages.js';

const FILE_FIELDS = 'id filename bytes purpose status statusDetails createdAt';
const PURPOSES = ['fine-tune', 'batch', 'assistants', 'vision', 'user_data'];

export interface FileView {
  id: string;
  filename: string;
  bytes: number;
  purpose: string;
  status: string;
  statusDetails: string | null;
  createdAt: string;
}

/** A progress bar on stderr when it is a terminal; nothing otherwise (scripts, pipes). */
async function progress(total: number, label: string): Promise<{ update(n: number): void; stop(): void }> {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  // A CommonJS package: its exports are the default export under ESM.
  const imported = await import('cli-progress');
  const { SingleBar, Presets } = (imported as unknown as { default?: typeof imported }).default ?? imported;
  const bar = new SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} bytes | {eta_formatted} left`, stream: process.stderr, hideCursor: true, etaBuffer: 50 },
    Presets.shades_classic,
  );
  bar.start(total, 0);
  let done = 0;
  return {
    update(n) {
      done += n;
      bar.update(done);
    },
    stop: () => bar.stop(),
  };
}

function counting(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
}

function headerValue(text: string): string {
  return text.replace(/["\r\n\\]/g, '_');
}

/**
 * Uploads a file from disk to /v1/files: its bytes stream (constant memory), with a progress bar on a
 * terminal. A missing or unreadable path is a UsageError (exit 2). `files create` and `models create --file` use it.
 */
export async function uploadFile(client: ApiClient, path: string, purpose: string, name?: string): Promise<Omit<FileView, 'statusDetails'>> {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new UsageError(`${path} is not a regular file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const filename = name ?? basename(path);
  const boundary = `mariner-${Math.random().toString(16).slice(2)}${Date.now().toString(16)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n${purpose}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${headerValue(filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const bar = await progress(size, 'Uploading');
  // Read only as fast as the socket takes it (Node's backpressure): memory stays constant whatever the file's size.
  async function* body() {
    yield head;
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      bar.update((chunk as Buffer).length);
      yield chunk as Buffer;
    }
    yield tail;
  }
  let created;
  try {
    created = await client.upload<{ id: string; filename: string; bytes: number; purpose: string; status: string; created_at: number }>(
      'POST',
      '/v1/files',
      Readable.from(body()),
      {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(head.length + size + tail.length),
      },
    );
  } finally {
    bar.stop();
  }
  const view = {
    id: created.id,
    filename: created.filename,
    bytes: created.bytes,
    purpose: created.purpose,
    status: created.status.toUpperCase(),
    createdAt: new Date(created.created_at * 1000).toISOString(),
  };
  return view;
}

export function registerFiles(program: Command): void {
  const files = program
    .command('files')
    .description("the project's files: upload (streamed from disk, any size), list, download, delete")
    .addHelpText(
      'after',
      `
Examples:
  mariner files create train.jsonl --purpose fine-tune
  mariner files list --purpose fine-tune
  mariner files download file-1234 --out copy.jsonl`,
    );

  files
    .command('create')
    .argument('<path>', 'the file to upload')
    .description('upload a file: its bytes stream from disk (constant memory), a progress bar on a terminal')
    .option('--purpose <purpose>', `what it is for: ${PURPOSES.join(', ')}`, 'fine-tune')
    .option('--name <filename>', 'the name it gets (default: the file name)')
    .action(
      run(async (inv, path: string) => {
        const view = await uploadFile(inv.client(), path, inv.options['purpose'], inv.options['name']);
        if (inv.format === 'table') process.stdout.write(`File ${view.id} uploaded (${view.filename}, ${view.bytes} bytes, ${view.purpose})\n`);
        else printData(inv.format, view);
      }),
    );

  files
    .command('list')
    .description("the project's files")
    .option('--purpose <purpose>', 'only files with this purpose')
    .action(
      run(async (inv) => {
        const client = inv.client();
        const items = await listAll<FileView>(client, 'files', FILE_FIELDS, {
          declare: '$purpose: String',
          args: 'purpose: $purpose, order: ASC',
          variables: { purpose: inv.options['purpose'] ?? null },
        });
        printList(inv.format, items, [
          { header: 'ID', value: (f) => f.id },
          { header: 'FILENAME', value: (f) => f.filename },
          { header: 'BYTES', value: (f) => f.bytes },
          { header: 'PURPOSE', value: (f) => f.purpose },
          { header: 'STATUS', value: (f) => f.status.toLowerCase() },
          { header: 'CREATED', value: (f) => f.createdAt },
        ]);
      }),
    );

  files
    .command('download')
    .argument('<id>', 'the file id')
    .description("save a file's bytes (streamed to disk)")
    .option('--out <path>', 'where to write them ("-": stdout; default: its file name in the current directory)')
    .option('--force', 'overwrite an existing file')
    .action(
      run(async (inv, id: string) => {
        const client = inv.client();
        const { file } = await client.graphql<{ file: FileView | null }>(`query ($id: ID!) { file(id: $id) { ${FILE_FIELDS} } }`, { id });
        if (!file) throw new CliError(`file ${id} not found (NOT_FOUND)`, 'NOT_FOUND');
        const out: string = inv.options['out'] ?? basename(file.filename);
        if (out !== '-' && existsSync(out) && !inv.options['force']) throw new CliError(`${out} exists: pass --force to overwrite it, or --out another path`);
        const response = await client.rest('GET', `/v1/files/${encodeURIComponent(id)}/content`);
        const bar = out === '-' ? { update() {}, stop() {} } : await progress(file.bytes, 'Downloading');
        try {
          await pipeline(
            Readable.fromWeb(response.body! as unknown as WebReadableStream<Uint8Array>),
            counting((n) => bar.update(n)),
            out === '-' ? process.stdout : createWriteStream(out),
          );
        } finally {
          bar.stop();
        }
        if (out === '-') return;
        if (inv.format === 'table') process.stderr.write(`Saved ${file.bytes} bytes of ${file.id} to ${out}\n`);
        else printData(inv.format, { id: file.id, path: out, bytes: file.bytes });
      }),
    );

  files
    .command('delete')
    .argument('<id>', 'the file id')
    .description('delete a file and its bytes')
    .action(
      run(async (inv, id: string) => {
        const { deleteFile } = await inv
          .client()
          .graphql<{ deleteFile: { id: string; deleted: boolean } }>(`mutation ($id: ID!) { deleteFile(id: $id) { id deleted } }`, { id });
        if (inv.format === 'table') process.stdout.write(`File ${deleteFile.id} deleted\n`);
        else printData(inv.format, deleteFile);
      }),
    );
}
