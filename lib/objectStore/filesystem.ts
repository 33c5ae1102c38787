import { randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ensurePrivateDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../privateDir.js';
import { ObjectNotFoundError } from './errors.js';
import { RESERVED_TOP_LEVEL_SEGMENT, validateListPrefix, validateObjectKey } from './keys.js';
import { meterBody, putFailure } from './meteredBody.js';
import type { ObjectInfo, ObjectStore, PutObjectOptions } from './objectStore.js';
import { hasUriScheme, keyOrNull } from './uris.js';

/** A temp file untouched this long belongs to a put that died with its process (crash, kill -9). */
export const STALE_TEMP_AGE_MS = 60 * 60 * 1000;

/** A put's temp file: `<pid>-<uuid>.part`, so that a start can tell the puts of a dead process from those of a live one. */
const tempName = () => `${process.pid}-${randomUUID()}.part`;
const TEMP_OWNER = /^(\d+)-[0-9a-f-]{36}\.part$/;

/** Whether the process `pid` is alive (EPERM: alive, another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Objects as files under one directory: key `a/b` is `<dir>/a/b`. A put writes `<dir>/.tmp/<pid>-<uuid>.part`,
 * fsyncs it and renames it into place, so readers see the old object or the new one, never a part
 * (rename(2) is atomic within one filesystem, which is why the temp folder lives inside `dir`).
 */
export async function createFilesystemObjectStore(dir: string): Promise<ObjectStore> {
  const root = path.resolve(dir);
  const tempDir = path.join(root, RESERVED_TOP_LEVEL_SEGMENT);
  // Tenants' files: the store's folders 0700 and its objects 0600 (this user's alone).
  await ensurePrivateDir(root);
  await mkdir(tempDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await removeStaleTempFiles(tempDir);
  return new FilesystemObjectStore(root, tempDir);
}

class FilesystemObjectStore implements ObjectStore {
  readonly kind = 'filesystem' as const;

  constructor(
    private readonly root: string,
    private readonly tempDir: string,
  ) {}

  async put(key: string, body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, options: PutObjectOptions = {}): Promise<{ bytes: number }> {
    const target = this.pathFor(key);
    options.signal?.throwIfAborted();
    const metered = meterBody(body, options);
    const temp = path.join(this.tempDir, tempName());
    let file: FileHandle | undefined;
    try {
      file = await open(temp, 'wx', PRIVATE_FILE_MODE);
      for await (const chunk of metered) await writeAll(file, chunk as Buffer);
      await file.sync(); // the bytes are on disk before the name points at them
      await file.close();
      file = undefined;
      options.signal?.throwIfAborted();
      await this.moveIntoPlace(temp, target);
      return { bytes: metered.bytes };
    } catch (error) {
      const failure = putFailure(metered, error, options.signal);
      metered.destroy();
      await file?.close().catch(() => {});
      await rm(temp, { force: true });
      throw failure;
    }
  }

  async get(key: string): Promise<Readable> {
    const file = this.pathFor(key);
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      if (isMissing(error)) throw new ObjectNotFoundError(key);
      throw error;
    }
    try {
      // A folder (key `a` while `a/b` exists) opens on Linux, but it is no object.
      if (!(await handle.stat()).isFile()) throw new ObjectNotFoundError(key);
    } catch (error) {
      await handle.close();
      throw error;
    }
    return handle.createReadStream(); // closes the handle when read to the end or destroyed
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const stats = await stat(this.pathFor(key));
      return stats.isFile() ? { key, bytes: stats.size } : null;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.pathFor(key);
    try {
      await unlink(file);
    } catch (error) {
      if (isMissing(error)) return;
      // unlink(2) on a folder fails with EISDIR (Linux) or EPERM (macOS); a folder is not an object.
      const stats = await stat(file).catch(() => null);
      if (stats?.isDirectory()) return;
      throw error;
    }
    await this.removeEmptyFolders(path.dirname(file));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validateListPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    yield* this.walk(slash === -1 ? '' : prefix.slice(0, slash), prefix);
  }

  uri(key: string): string {
    return pathToFileURL(this.pathFor(key)).href;
  }

  keyFromUri(uri: string): string | null {
    if (!hasUriScheme(uri)) return keyOrNull(uri);
    if (!/^file:/i.test(uri)) return null;
    let file: string;
    try {
      file = fileURLToPath(uri); // also resolves `.`/`..` and %2e%2e segments, as URL parsing does
    } catch {
      return null;
    }
    const relative = path.relative(this.root, file);
    if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) return null;
    return keyOrNull(relative.split(path.sep).join('/'));
  }

  async close(): Promise<void> {}

  /** The file for a key; validation (no `..`, no absolute keys) is what keeps it under the root. */
  private pathFor(key: string): string {
    validateObjectKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  private async moveIntoPlace(temp: string, target: string): Promise<void> {
    const folder = path.dirname(target);
    for (let attempt = 1; ; attempt++) {
      await mkdir(folder, { recursive: true, mode: PRIVATE_DIR_MODE });
      try {
        await rename(temp, target);
        break;
      } catch (error) {
        // A concurrent delete may prune the (then empty) folder between mkdir and rename: make it again.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3) throw error;
      }
    }
    await syncFolder(folder); // makes the rename itself durable
  }

  /** Deleting the last object of a folder removes the folder, up to (never including) the root. */
  private async removeEmptyFolders(folder: string): Promise<void> {
    for (let current = folder; current.startsWith(this.root + path.sep); current = path.dirname(current)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (ENOTEMPTY/EEXIST), already gone, or in use by a concurrent put
      }
    }
  }

  private async *walk(folderKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const folder = folderKey === '' ? this.root : path.join(this.root, ...folderKey.split('/'));
    let entries: Dirent[];
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    const children = entries
      .filter((entry) => !(folderKey === '' && entry.name === RESERVED_TOP_LEVEL_SEGMENT))
      .map((entry) => {
        const key = folderKey === '' ? entry.name : `${folderKey}/${entry.name}`;
        // A folder sorts as `name/`, so walking in this order yields keys in S3's order (UTF-8 bytes).
        return { entry, key, order: Buffer.from(entry.isDirectory() ? `${key}/` : key) };
      })
      .sort((a, b) => Buffer.compare(a.order, b.order));
    for (const { entry, key } of children) {
      if (entry.isDirectory()) {
        const folderPrefix = `${key}/`;
        if (folderPrefix.startsWith(prefix) || prefix.startsWith(folderPrefix)) yield* this.walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix) && keyOrNull(key) !== null) {
        const stats = await stat(path.join(folder, entry.name)).catch((error: unknown) => {
          if (isMissing(error)) return null; // deleted while listing
          throw error;
        });
        if (stats) yield { key, bytes: stats.size };
      }
    }
  }
}

async function writeAll(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length;) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

async function syncFolder(folder: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(folder, 'r');
    await handle.sync();
  } catch {
    // Not every platform can fsync a folder (Windows); the rename is done either way.
  } finally {
    await handle?.close().catch(() => {});
  }
}

/**
 * Removes what crashed puts left (issue 24: after a kill -9 during a 200 MB upload, its 105 MB part stayed
 * on disk): a temp file of a process that is gone (its pid no longer runs, or is this process's own: a
 * pid reused since) and last written before this process started, and any temp file untouched for
 * STALE_TEMP_AGE_MS (those of older versions, without a pid). The puts of another live process sharing
 * the folder (`mariner agent` beside `mariner up`) are left alone.
 */
async function removeStaleTempFiles(tempDir: string): Promise<void> {
  const now = Date.now();
  const cutoff = now - STALE_TEMP_AGE_MS;
  const processStart = now - process.uptime() * 1000;
  for (const name of await readdir(tempDir)) {
    const file = path.join(tempDir, name);
    const stats = await stat(file).catch(() => null);
    if (!stats) continue;
    const owner = TEMP_OWNER.exec(name);
    const ownerGone = owner !== null && (Number(owner[1]) === process.pid || !alive(Number(owner[1])));
    if (stats.mtimeMs < cutoff || (ownerGone && stats.mtimeMs < processStart)) await rm(file, { force: true, recursive: true });
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
