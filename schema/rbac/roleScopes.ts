import { ConfigError, readJsonSetting } from '../../lib/config.js';

/** Role names of the role → scope table (LLMariner rbac-server roleScopesMap). */
export type RoleName = 'organizationOwner' | 'projectOwner' | 'projectMember' | 'tenantSystem';
export type RoleScopeTable = Record<RoleName, string[]>;

const readWrite = (...resources: string[]) => resources.flatMap((r) => [`${r}.read`, `${r}.write`]);

const PROJECT_RESOURCES = [
  'api.model',
  'api.fine_tuning.jobs',
  'api.workspaces.notebooks',
  'api.batch.jobs',
  'api.files',
  'api.vector-stores',
  'api.selfuser',
  'api.api_usages',
];

/** The default table, as LLMariner ships it (deployments/rbac-server/values.yaml). */
export const DEFAULT_ROLE_SCOPES: RoleScopeTable = {
  organizationOwner: readWrite(...PROJECT_RESOURCES, 'api.clusters'),
  projectOwner: readWrite(...PROJECT_RESOURCES),
  projectMember: readWrite(...PROJECT_RESOURCES),
  tenantSystem: ['api.clusters.read', 'api.fine_tuning.jobs.read', 'api.fine_tuning.jobs.write', 'api.k8s.clusterscope.read', 'api.k8s.namespaced.write'],
};

const ROLE_NAMES: RoleName[] = ['organizationOwner', 'projectOwner', 'projectMember', 'tenantSystem'];
const SCOPE = /^[a-z0-9_.-]+\.(read|write)$/;

/** The table in force: the default, or the JSON file named by MARINER_ROLE_SCOPES_FILE, validated. */
export function loadRoleScopes(file: string | undefined): RoleScopeTable {
  if (!file) return DEFAULT_ROLE_SCOPES;
  const raw = readJsonSetting('MARINER_ROLE_SCOPES_FILE', file);
  if (typeof raw !== 'object' || raw === null) throw new ConfigError('MARINER_ROLE_SCOPES_FILE must hold an object');
  const table = {} as RoleScopeTable;
  for (const role of ROLE_NAMES) {
    const scopes = (raw as Record<string, unknown>)[role];
    if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && SCOPE.test(s))) {
      throw new ConfigError(`MARINER_ROLE_SCOPES_FILE: ${role} must be a list of scopes like api.model.read`);
    }
    table[role] = scopes as string[];
  }
  const unknown = Object.keys(raw).filter((k) => !ROLE_NAMES.includes(k as RoleName));
  if (unknown.length) throw new ConfigError(`MARINER_ROLE_SCOPES_FILE: unknown roles ${unknown.join(', ')}`);
  return table;
}
