import { badInput, forbidden, notFound } from '../../lib/errors.js';
import { assertId, newId } from '../../lib/ids.js';
import { projectScopeOf } from '../../lib/identity.js';
import { ObjectNotFoundError, platformAreaOf } from '../../lib/objectStore/index.js';
import type { FilesContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import type { FileRow, ProjectScope } from './store.js';
import { validateFineTuneJsonl, validFilename, validPurpose } from './validation.js';

const iso = (d: Date) => d.toISOString();

const scopeOf = (ctx: FilesContext): ProjectScope => projectScopeOf(ctx.identity);

/** Object keys: `<tenant>/<project>/<file id>`, so one project's objects never share a prefix with another's. */
function objectKeyFor(scope: ProjectScope, fileId: string): string {
  return `files/${scope.tenantId}/${scope.projectId}/${fileId}`;
}

async function removeObjectQuietly(ctx: FilesContext, key: string): Promise<void> {
  try {
    await ctx.objectStore.delete(key);
  } catch {
    // The sweeper retries objects of expired uploads; a deleted File's object is not referenced.
  }
}

export const resolvers: Resolvers<FilesContext> = {
  Query: {
    files: (_p, { purpose, after, limit, order }, ctx) =>
      ctx.store.listFiles(scopeOf(ctx), purpose, { after, limit, order: order === 'DESC' ? 'desc' : 'asc' }),
    file: async (_p, { id }, ctx) => (await ctx.store.file(scopeOf(ctx), assertId('file', id, 'id'))) ?? null,
  },
  Mutation: {
    beginFileUpload: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const filename = validFilename(input.filename, 'filename');
      const purpose = input.purpose == null ? null : validPurpose(input.purpose);
      const id = newId('file');
      return ctx.store.insertUpload({
        id,
        tenant_id: scope.tenantId,
        organization_id: scope.organizationId,
        project_id: scope.projectId,
        filename,
        purpose,
        object_key: objectKeyFor(scope, id),
        created_by: ctx.identity!.principal.userId,
        expires_at: new Date(Date.now() + ctx.settings.uploadExpirySeconds * 1000),
      });
    },
    completeFileUpload: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const upload = await ctx.store.upload(scope, assertId('file', input.id, 'id'));
      if (!upload) throw notFound('upload', input.id);
      const fail = async (error: Error): Promise<never> => {
        await ctx.store.deleteUpload(upload.id);
        await removeObjectQuietly(ctx, upload.object_key);
        throw error;
      };
      let purpose: string;
      try {
        purpose = validPurpose(input.purpose);
      } catch (error) {
        return fail(error as Error);
      }
      if (upload.purpose !== null && upload.purpose !== purpose) {
        return fail(badInput(`purpose: the upload was begun for ${upload.purpose}`, 'purpose'));
      }
      const head = await ctx.objectStore.head(upload.object_key);
      if (!head) return fail(badInput('file: no bytes were uploaded', 'file'));
      if (head.bytes > ctx.settings.maxFileBytes) {
        return fail(badInput(`file: larger than the limit of ${ctx.settings.maxFileBytes} bytes`, 'file'));
      }
      if (purpose === 'fine-tune') {
        try {
          await validateFineTuneJsonl(await ctx.objectStore.get(upload.object_key), ctx.settings.maxFineTuneLineBytes);
        } catch (error) {
          return fail(error as Error);
        }
      }
      const file = await ctx.store.completeUpload(upload.id, {
        id: upload.id,
        tenant_id: upload.tenant_id,
        organization_id: upload.organization_id,
        project_id: upload.project_id,
        filename: upload.filename,
        purpose,
        bytes: head.bytes,
        status: 'PROCESSED',
        status_details: null,
        object_key: upload.object_key,
        owns_object: true,
      });
      if (!file) throw notFound('upload', upload.id);
      return file;
    },
    abortFileUpload: async (_p, { id }, ctx) => {
      const upload = await ctx.store.upload(scopeOf(ctx), assertId('file', id, 'id'));
      if (!upload) throw notFound('upload', id);
      await ctx.store.deleteUpload(upload.id);
      await removeObjectQuietly(ctx, upload.object_key);
      return { id, deleted: true };
    },
    createFileFromObjectPath: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const purpose = validPurpose(input.purpose);
      const key = ctx.objectStore.keyFromUri(input.objectPath);
      if (!key) throw badInput(`objectPath: "${input.objectPath.slice(0, 200)}" is not an object in this platform's store`, 'objectPath');
      // Mariner's own objects (files of projects, models' weights, fine-tuning outputs) are reached
      // through their File or Model, whose owners are checked; never linked by path (lib/objectStore/keys.ts `platformAreaOf`).
      const area = platformAreaOf(key);
      if (area) {
        throw forbidden(
          `objectPath: ${area}/ is where Mariner keeps ${area === 'files' ? "projects' files" : "models' weights"}; objects there cannot be linked by path (use the File or Model itself), only objects elsewhere in the store`,
        );
      }
      const head = await ctx.objectStore.head(key);
      if (!head) throw notFound('object', input.objectPath);
      if (purpose === 'fine-tune') {
        try {
          await validateFineTuneJsonl(await ctx.objectStore.get(key), ctx.settings.maxFineTuneLineBytes);
        } catch (error) {
          if (error instanceof ObjectNotFoundError) throw notFound('object', input.objectPath);
          throw error;
        }
      }
      return ctx.store.insertFile({
        id: newId('file'),
        tenant_id: scope.tenantId,
        organization_id: scope.organizationId,
        project_id: scope.projectId,
        filename: validFilename(key.split('/').pop() ?? key, 'objectPath'),
        purpose,
        bytes: head.bytes,
        status: 'PROCESSED',
        status_details: null,
        object_key: key,
        owns_object: false,
      });
    },
    deleteFile: async (_p, { id }, ctx) => {
      const file = await ctx.store.deleteFile(scopeOf(ctx), assertId('file', id, 'id'));
      if (!file) throw notFound('file', id);
      if (file.owns_object) await removeObjectQuietly(ctx, file.object_key);
      return { id, deleted: true };
    },
  },
  File: {
    __resolveReference: async (ref, ctx) => (await ctx.store.file(scopeOf(ctx), ref.id)) ?? null,
    createdAt: (f: FileRow) => iso(f.created_at),
    statusDetails: (f) => f.status_details,
    objectStorePath: (f, _a, ctx) => ctx.objectStore.uri(f.object_key),
    objectKey: (f) => f.object_key,
    projectId: (f) => f.project_id,
  },
  FileUpload: {
    objectKey: (u) => u.object_key,
    maxBytes: (_u, _a, ctx) => ctx.settings.maxFileBytes,
    expiresAt: (u) => iso(u.expires_at),
  },
};
