import { badInput, ErrorCode, forbidden, MarinerError } from '../../lib/errors.js';
import { assertId, IdPrefix, isId, randomString } from '../../lib/ids.js';
import { projectScopeOf } from '../../lib/identity.js';
import { platformAreaOf } from '../../lib/objectStore/index.js';
import { isWhisperGgmlName } from '../../lib/transcription.js';
import type { ModelsContext } from './context.js';
import type { ModelRow } from './store.js';

// Where models come from, checked against who may read what (Security model: organizations are
// isolated). Objects in Mariner's own areas of the store (lib/objectStore/keys.ts `platformAreaOf`: projects'
// files, models' weights, fine-tuning outputs) are never taken on a path's word: a File is named by
// its id, a fine-tuning output by its job, so no project can copy another's private model or file.

type Formats = ModelRow['formats'];

const HF_REPO = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;
const OLLAMA_REF = /^[a-z0-9][\w.-]{0,95}(:[\w.-]{1,64})?$/;
const FIELD = 'input.source';

/** The source of a base model (createBaseModel), checked for its repository; returns the formats it implies. */
export async function baseModelSource(ctx: ModelsContext, repository: string, raw: string): Promise<{ source: string; formats: Formats }> {
  const source = raw.trim();
  switch (repository) {
    case 'FILE':
      return fileSource(ctx, source);
    case 'OBJECT_STORE':
      await catalogObject(ctx, source);
      return { source, formats: formatsOfName(source) };
    case 'HUGGING_FACE':
      if (!HF_REPO.test(source)) throw badInput(`${FIELD}: a Hugging Face repository looks like org/name`, FIELD);
      return { source, formats: ['HUGGING_FACE'] };
    case 'OLLAMA':
      if (!OLLAMA_REF.test(source)) throw badInput(`${FIELD}: an Ollama model looks like name or name:tag`, FIELD);
      return { source, formats: ['OLLAMA'] };
    default:
      throw badInput('input.sourceRepository: fine-tuned models are registered with registerFineTunedModel', 'input.sourceRepository');
  }
}

/**
 * A base model from a File of the caller's project. The files subgraph owns files: it is asked with
 * the caller's identity, so its policy and project ownership apply. Returns the file's object (the
 * loader reads the model from there) and the formats its name implies.
 */
async function fileSource(ctx: ModelsContext, raw: string): Promise<{ source: string; formats: Formats }> {
  const id = assertId('file', raw, FIELD);
  const file = await ctx.files.file(ctx, id);
  if (!file) throw new MarinerError(ErrorCode.NOT_FOUND, `${FIELD}: file ${id} not found in the current project`, { field: FIELD });
  if (file.status === 'ERROR') throw badInput(`${FIELD}: file ${id} failed processing`, FIELD);
  if (!ctx.objectStore.keyFromUri(file.objectStorePath)) {
    throw badInput(`${FIELD}: the bytes of file ${id} are not in this platform's store`, FIELD);
  }
  return { source: file.objectStorePath, formats: formatsOfName(file.filename) };
}

/** The formats a file name implies: `.gguf` is GGUF, whisper.cpp's `ggml-*.bin` a Whisper model (WHISPER_GGML). */
function formatsOfName(name: string): Formats {
  if (name.toLowerCase().endsWith('.gguf')) return ['GGUF'];
  return isWhisperGgmlName(name) ? ['WHISPER_GGML'] : [];
}

/** The key of an object path in this platform's store; BAD_USER_INPUT for anything else. */
function keyOf(ctx: ModelsContext, source: string): string {
  const key = ctx.objectStore.keyFromUri(source);
  if (!key) throw badInput(`${FIELD}: "${source.slice(0, 200)}" is not an object in this platform's store`, FIELD);
  return key;
}

/**
 * An OBJECT_STORE source of a catalog model (platform admins only: createBaseModel checks it first).
 * Projects' files are named as FILE sources; under `models/` only the admins' own tenant, and not
 * fine-tuning outputs nor the folder of a model they cannot see (another project's private model):
 * platform admins stage catalog weights there (`models/<tenant>/uploads/...`), but must not publish an
 * organization's private model to the whole tenant by its path.
 */
async function catalogObject(ctx: ModelsContext, source: string): Promise<void> {
  const key = keyOf(ctx, source);
  const area = platformAreaOf(key);
  if (area === null) return;
  if (area === 'files') throw forbidden(`${FIELD}: files/ holds projects' files: make a model from a File with sourceRepository FILE and the file's id`);
  const scope = projectScopeOf(ctx.identity);
  const [root, tenant, folder] = key.split('/');
  const refused = () => forbidden(`${FIELD}: this part of models/ holds models of projects (their weights, fine-tuning outputs) and is not a source by path`);
  if (root !== 'models' || tenant !== scope.tenantId || folder === undefined || folder.toLowerCase() === 'fine-tuned') throw refused();
  const owners = await ctx.store.projectsOfFolder(scope.tenantId, folder);
  if (owners.some((projectId) => projectId !== null && projectId !== scope.projectId)) throw refused();
}

/** A registered fine-tuned model's source: the object's key and whether the id is the job's own (no random tag). */
export interface FineTunedSource {
  key: string;
  /** The output of a fine-tuning job of this registration's suffix: its id is `ft:<base>:<suffix>` as the job expects. */
  fromJob: boolean;
}

/** The object-store prefix of a fine-tuning job's output (subgraphs/jobs `outputPrefix`, without its `/`). */
const jobOutput = (tenantId: string, jobId: string) => `models/${tenantId}/fine-tuned/${jobId}`;

/** The 6 characters of a job id that a fine-tuning job adds to its model's suffix (subgraphs/jobs `registrationSuffix`). */
const jobTag = (jobId: string) => jobId.slice(IdPrefix.fineTuningJob.length, IdPrefix.fineTuningJob.length + 6).toLowerCase();

/**
 * The source of a fine-tuned model (registerFineTunedModel): an object outside Mariner's areas, a file
 * of the caller's project, or the output of a fine-tuning job, named with the suffix its job gives
 * (ending in `-<6 characters of the job id>`) and not already another project's model. A job's id is
 * known to its project and to the clusters serving its organization only. Checked before the store is
 * read, so nothing is learnt about objects in areas the caller may not name.
 */
export async function fineTunedSource(ctx: ModelsContext, raw: string, suffix: string): Promise<FineTunedSource> {
  const scope = projectScopeOf(ctx.identity);
  const source = raw.trim();
  const key = keyOf(ctx, source);
  const area = platformAreaOf(key);
  let fromJob = false;
  if (area === 'files' && !key.startsWith(`files/${scope.tenantId}/${scope.projectId}/`)) {
    throw forbidden(`${FIELD}: files/ holds projects' files: only this project's files can be named`);
  }
  if (area === 'models') {
    const [root, tenant, folder, jobId] = key.split('/');
    const refused = (why: string) => forbidden(`${FIELD}: models/ holds models' weights and fine-tuning outputs; ${why}`);
    if (root !== 'models' || tenant !== scope.tenantId || folder !== 'fine-tuned' || jobId === undefined || !isId('fineTuningJob', jobId)) {
      throw refused('only a fine-tuning job’s output (models/<tenant>/fine-tuned/<job id>) can be registered');
    }
    if (!suffix.endsWith(`-${jobTag(jobId)}`)) {
      throw refused(`a job's output is registered with the suffix its job gives, ending in -<the first 6 characters of the job id, lowercase>`);
    }
    if (await ctx.store.storedForOtherProject(scope.tenantId, ctx.objectStore.uri(jobOutput(scope.tenantId, jobId)), scope.projectId)) {
      throw refused('that output is a model of another project');
    }
    fromJob = true;
  }
  if (!(await storedAt(ctx, key))) throw badInput(`${FIELD}: nothing is stored at ${source.slice(0, 200)}`, FIELD);
  return { key, fromJob };
}

/**
 * The suffix of a fine-tuned model's id. A job's registration keeps its suffix (it already ends with
 * the job's tag, and the job recognises its model by that id). Any other registration gets
 * `-<6 random characters>`, as OpenAI's fine-tuned ids carry the job's: model ids are unique in the
 * tenant, so a name a user chose could otherwise collide with, and so reveal, another project's model.
 */
export function registrationSuffix(suffix: string, source: FineTunedSource): string {
  return source.fromJob ? suffix : `${suffix}-${randomString(6).toLowerCase()}`;
}

/** An object at `key`, or a folder of objects under it (a fine-tuning job's output: adapter config and weights). */
async function storedAt(ctx: ModelsContext, key: string): Promise<boolean> {
  if (await ctx.objectStore.head(key)) return true;
  for await (const _object of ctx.objectStore.list(key.endsWith('/') ? key : `${key}/`)) return true;
  return false;
}
