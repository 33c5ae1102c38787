import { forbidden } from '../../lib/errors.js';
import { isPlatformAdmin } from '../../lib/identity.js';
import type { ModelsContext } from './context.js';
import type { ModelRow } from './store.js';

/**
 * The tenant's catalog: base models without a project, seen and run by every organization. Platform
 * admins (owners of the default organization, lib/identity.ts `isPlatformAdmin`) manage it; an
 * organization's owner changes only its own projects' models (README "Security model"; LLMariner lets
 * any organization owner do it).
 */
export const inCatalog = (model: ModelRow): boolean => model.project_id === null;

const isAdmin = (ctx: ModelsContext): boolean => ctx.identity !== null && isPlatformAdmin(ctx.identity.principal);

/** Creating base models: the catalog's (and the admins' own projects') contents are the platform admins' to choose. */
export function requireCatalogAdmin(ctx: ModelsContext): void {
  if (!isAdmin(ctx)) {
    throw forbidden(
      'only platform admins (owners of the default organization) create base models: base models make the tenant’s catalog, loaded by platform clusters; a project gets its own models by fine-tuning them',
    );
  }
}

/** Changing, deactivating or deleting a model: a catalog model by platform admins only; a project's model by the project. */
export function requireManager(ctx: ModelsContext, model: ModelRow, action: string): void {
  if (inCatalog(model) && !isAdmin(ctx)) {
    throw forbidden(
      `model ${model.id} is in the tenant's catalog, shared by every organization: only platform admins (owners of the default organization) ${action} it`,
    );
  }
}

/**
 * Activating a model: as `requireManager`, except that a catalog model with on-demand allocation may
 * be activated by anyone who sees it. That is what its first inference request does as the caller
 * (subgraphs/inference `activate`), and what the allocation policy, set by the platform admins, allows.
 */
export function requireActivator(ctx: ModelsContext, model: ModelRow): void {
  if (inCatalog(model) && model.config.clusterAllocationPolicy.enableOnDemandAllocation) return;
  requireManager(ctx, model, 'activate');
}
