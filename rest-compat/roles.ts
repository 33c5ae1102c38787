/**
 * Roles of organization and project members in LLMariner's user-management API (user-manager
 * api/v1: `OrganizationRole`, `ProjectRole`).
 */
import { RestError } from './errors.js';
import type { JsonObject } from './json.js';

export type OrganizationRole = 'OWNER' | 'READER' | 'TENANT_SYSTEM';
export type ProjectRole = 'OWNER' | 'MEMBER';

/**
 * Roles are read in LLMariner's proto form (`ORGANIZATION_ROLE_OWNER`, or its enum number, as
 * protojson accepts) and in the short form Mariner's GraphQL uses (`OWNER`), case-insensitively;
 * they are written in the proto form, as LLMariner's grpc-gateway JSON does.
 */
const ROLE_ENUMS = {
  organization: { prefix: 'ORGANIZATION_ROLE_', values: ['OWNER', 'READER', 'TENANT_SYSTEM'] },
  project: { prefix: 'PROJECT_ROLE_', values: ['OWNER', 'MEMBER'] },
} as const;

export function parseRole(kind: 'organization', value: unknown, param: string): OrganizationRole | undefined;
export function parseRole(kind: 'project', value: unknown, param: string): ProjectRole | undefined;
export function parseRole(kind: keyof typeof ROLE_ENUMS, value: unknown, param: string): string | undefined {
  const { prefix, values } = ROLE_ENUMS[kind];
  if (value === undefined || value === null || value === 0) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= values.length) return values[value - 1];
  if (typeof value === 'string') {
    const name = value.trim().toUpperCase();
    if (name === '' || name === `${prefix}UNSPECIFIED`) return undefined;
    const short = name.startsWith(prefix) ? name.slice(prefix.length) : name;
    if ((values as readonly string[]).includes(short)) return short;
  }
  const accepted = values.map((v) => `${prefix}${v}`).join(', ');
  throw RestError.badRequest(`${param}: ${JSON.stringify(value)?.slice(0, 60)} is not a ${kind} role (expected one of ${accepted})`, param);
}

export function requiredRole<K extends 'organization' | 'project'>(kind: K, body: JsonObject, param = 'role') {
  const role = kind === 'organization' ? parseRole('organization', body[param], param) : parseRole('project', body[param], param);
  if (role === undefined) throw RestError.badRequest(`${param} is required`, param);
  return role;
}

export const organizationRoleName = (role: OrganizationRole | null) => `ORGANIZATION_ROLE_${role ?? 'UNSPECIFIED'}`;
export const projectRoleName = (role: ProjectRole | null) => `PROJECT_ROLE_${role ?? 'UNSPECIFIED'}`;
