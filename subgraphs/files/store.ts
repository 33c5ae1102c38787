import type { Knex } from '../../lib/db.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'files';

export type FileStatusValue = 'UPLOADED' | 'PROCESSED' | 'ERROR';

export interface FileRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  filename: string;
  purpose: string;
  /** bigint: a string on pg, normalised to a number by the store. */
  bytes: number;
  status: FileStatusValue;
  status_details: string | null;
  object_key: string;
  owns_object: boolean;
  created_at: Date;
}

export interface UploadRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  filename: string;
  purpose: string | null;
  object_key: string;
  created_by: string;
  expires_at: Date;
  created_at: Date;
}

/** The files of one project (lib/identity's ProjectScope fits). */
export type ProjectScope = Pick<import('../../lib/identity.js').ProjectScope, 'tenantId' | 'organizationId' | 'projectId'>;

function normalise(row: FileRow | undefined): FileRow | undefined {
  return row ? { ...row, bytes: Number(row.bytes) } : undefined;
}

/** All SQL of the files subgraph. Every read is scoped to a project. */
export class FileStore {
  constructor(private readonly knex: Knex) {}

  private t(table: string): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table(table);
  }

  async file(scope: ProjectScope, id: string): Promise<FileRow | undefined> {
    return normalise(await this.t('files').where({ id, project_id: scope.projectId, tenant_id: scope.tenantId }).first());
  }

  async filesByIds(ids: readonly string[]): Promise<FileRow[]> {
    if (!ids.length) return [];
    return ((await this.t('files').whereIn('id', ids)) as FileRow[]).map((r) => normalise(r)!);
  }

  async listFiles(scope: ProjectScope, purpose: string | null | undefined, page: PageArgs): Promise<Page<FileRow>> {
    const result = await paginate<FileRow>(
      () => {
        const q = this.t('files').where({ 'files.project_id': scope.projectId, 'files.tenant_id': scope.tenantId });
        return purpose ? q.where('files.purpose', purpose) : q;
      },
      'files',
      page,
    );
    return { ...result, items: result.items.map((r) => normalise(r)!) };
  }

  async insertFile(row: Omit<FileRow, 'created_at'>): Promise<FileRow> {
    const [created] = await this.t('files').insert(row).returning('*');
    return normalise(created as FileRow)!;
  }

  async deleteFile(scope: ProjectScope, id: string): Promise<FileRow | undefined> {
    const [row] = await this.t('files').where({ id, project_id: scope.projectId, tenant_id: scope.tenantId }).delete().returning('*');
    return normalise(row as FileRow | undefined);
  }

  async insertUpload(row: Omit<UploadRow, 'created_at'>): Promise<UploadRow> {
    const [created] = await this.t('uploads').insert(row).returning('*');
    return created as UploadRow;
  }

  async upload(scope: ProjectScope, id: string): Promise<UploadRow | undefined> {
    return this.t('uploads').where({ id, project_id: scope.projectId, tenant_id: scope.tenantId }).first();
  }

  /**
   * Turns an upload into a File in one transaction: the upload row must still exist (a concurrent
   * completion or the sweeper may have taken it), and goes.
   */
  async completeUpload(id: string, file: Omit<FileRow, 'created_at'>): Promise<FileRow | undefined> {
    return this.knex.transaction(async (trx) => {
      const removed = await trx.withSchema(SCHEMA).table('uploads').where({ id }).delete();
      if (!removed) return undefined;
      const [created] = await trx.withSchema(SCHEMA).table('files').insert(file).returning('*');
      return normalise(created as FileRow);
    });
  }

  async deleteUpload(id: string): Promise<UploadRow | undefined> {
    const [row] = await this.t('uploads').where({ id }).delete().returning('*');
    return row as UploadRow | undefined;
  }

  async expiredUploads(now: Date, limit: number): Promise<UploadRow[]> {
    return this.t('uploads').where('expires_at', '<', now).orderBy('expires_at').limit(limit);
  }
}
