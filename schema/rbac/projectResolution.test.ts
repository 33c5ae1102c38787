import { describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/identity.js';
import { resolveProject } from './projectResolution.js';
import { DEFAULT_ROLE_SCOPES } from './roleScopes.js';

function user(partial: Partial<Principal>): Principal {
  return {
    userId: 'u@example.com',
    internalUserId: 'i',
    tenantId: 't',
    isServiceAccount: false,
    apiKey: null,
    organizations: [],
    projects: [],
    ...partial,
  };
}

const twoOrgs = user({
  organizations: [
    { organizationId: 'org-a', role: 'READER', isDefault: true },
    { organizationId: 'org-b', role: 'OWNER', isDefault: false },
  ],
  projects: [
    { projectId: 'proj-a1', organizationId: 'org-a', role: 'MEMBER', isDefault: false },
    { projectId: 'proj-a2', organizationId: 'org-a', role: 'OWNER', isDefault: true },
    { projectId: 'proj-b1', organizationId: 'org-b', role: 'OWNER', isDefault: false },
  ],
});

describe('resolveProject (LLMariner §9 role resolution)', () => {
  it('picks the default project when nothing is requested', () => {
    const r = resolveProject(twoOrgs, {}, DEFAULT_ROLE_SCOPES);
    expect(r).toMatchObject({ ok: true, context: { projectId: 'proj-a2', role: 'projectOwner' } });
  });

  it('picks the requested organization’s default, else its first project', () => {
    const r = resolveProject(twoOrgs, { organizationId: 'org-b' }, DEFAULT_ROLE_SCOPES);
    expect(r).toMatchObject({ ok: true, context: { projectId: 'proj-b1', role: 'organizationOwner' } });
  });

  it('maps a reader to projectMember or projectOwner by project role', () => {
    const r = resolveProject(twoOrgs, { projectId: 'proj-a1' }, DEFAULT_ROLE_SCOPES);
    expect(r).toMatchObject({ ok: true, context: { role: 'projectMember' } });
    expect(r.ok && r.context.scopes).not.toContain('api.clusters.read');
  });

  it('gives organization owners the cluster scopes', () => {
    const r = resolveProject(twoOrgs, { projectId: 'proj-b1' }, DEFAULT_ROLE_SCOPES);
    expect(r.ok && r.context.scopes).toContain('api.clusters.write');
  });

  it('refuses a project in another organization than the requested one', () => {
    const r = resolveProject(twoOrgs, { projectId: 'proj-b1', organizationId: 'org-a' }, DEFAULT_ROLE_SCOPES);
    expect(r).toEqual({ ok: false, reason: 'project proj-b1 is not in organization org-a' });
  });

  it('refuses a reader with no project role', () => {
    const reader = user({ organizations: [{ organizationId: 'org-a', role: 'READER', isDefault: true }] });
    const r = resolveProject(reader, {}, DEFAULT_ROLE_SCOPES);
    expect(r.ok).toBe(false);
  });

  it('an API key fixes its project: headers cannot pick another', () => {
    const keyed = { ...twoOrgs, apiKey: { id: 'key_1', organizationId: 'org-a', projectId: 'proj-a1', excludedFromRateLimiting: false } };
    expect(resolveProject(keyed, {}, DEFAULT_ROLE_SCOPES)).toMatchObject({ ok: true, context: { projectId: 'proj-a1' } });
    expect(resolveProject(keyed, { projectId: 'proj-b1' }, DEFAULT_ROLE_SCOPES)).toEqual({
      ok: false,
      reason: 'this API key is bound to project proj-a1',
    });
  });

  it('tenant-system members get the tenantSystem scopes', () => {
    const system = user({
      organizations: [{ organizationId: 'org-a', role: 'TENANT_SYSTEM', isDefault: true }],
      projects: [{ projectId: 'proj-a1', organizationId: 'org-a', role: 'OWNER', isDefault: true }],
    });
    const r = resolveProject(system, {}, DEFAULT_ROLE_SCOPES);
    expect(r).toMatchObject({ ok: true, context: { role: 'tenantSystem' } });
    expect(r.ok && r.context.scopes).toContain('api.k8s.clusterscope.read');
  });
});
