import { buildSchema, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { Identity } from '../lib/identity.js';
import type { PolicyMap } from '../schema/rbac/policy.js';
import { allow, hasScope, isAuthenticated, type RuleContext } from '../schema/rbac/rules.js';
import { authorizeOperation } from './authorizeOperation.js';

const schema = buildSchema(`
  interface Node { id: ID! }
  type Job implements Node { id: ID! status: String! }
  type Model implements Node { id: ID! name: String! ownerNotes: String }
  union Thing = Job | Model
  type Query { node(id: ID!): Node thing: Thing jobs: [Job!]! unmapped: String }
  type Mutation { cancelJob(id: ID!): Job! }
`);

const policy: PolicyMap = {
  Query: { node: isAuthenticated, thing: isAuthenticated, jobs: hasScope('api.fine_tuning.jobs', 'read') },
  Mutation: { cancelJob: hasScope('api.fine_tuning.jobs', 'write') },
  Job: { '*': allow },
  Model: { id: allow, name: allow, ownerNotes: hasScope('api.model', 'write') },
};

function member(scopes: string[]): RuleContext {
  const identity: Identity = {
    principal: {
      userId: 'm@example.com',
      internalUserId: 'u1',
      tenantId: 't',
      isServiceAccount: false,
      apiKey: null,
      organizations: [],
      projects: [],
    },
    project: { organizationId: 'org-a', projectId: 'proj-a', role: 'projectMember', scopes },
  };
  return { identity, system: false };
}

async function check(query: string, context: RuleContext, variables: Record<string, unknown> = {}) {
  try {
    await authorizeOperation({ schema, document: parse(query), variables, policy, context });
    return 'allowed';
  } catch (error) {
    const e = error as { message: string; extensions: { code: string; coordinate: string } };
    return `${e.extensions.code} ${e.extensions.coordinate}`;
  }
}

describe('authorizeOperation: the gateway RBAC walk', () => {
  const reader = member(['api.fine_tuning.jobs.read', 'api.model.read']);

  it('allows an operation whose every field has a granting rule', async () => {
    expect(await check('{ jobs { id status } }', reader)).toBe('allowed');
  });

  it('refuses a field with no rule (deny by default)', async () => {
    expect(await check('{ jobs { id } unmapped }', reader)).toBe('FORBIDDEN Query.unmapped');
  });

  it('refuses anonymous callers as UNAUTHENTICATED', async () => {
    expect(await check('{ thing { __typename } }', { identity: null, system: false })).toBe('UNAUTHENTICATED Query.thing');
  });

  it('checks mutations', async () => {
    expect(await check('mutation { cancelJob(id: "1") { id } }', reader)).toBe('FORBIDDEN Mutation.cancelJob');
    expect(await check('mutation { cancelJob(id: "1") { id } }', member(['api.fine_tuning.jobs.write']))).toBe('allowed');
  });

  it('checks fields inside inline fragments on an interface, for every possible type', async () => {
    expect(await check('{ node(id: "1") { id ... on Model { ownerNotes } } }', reader)).toBe('FORBIDDEN Model.ownerNotes');
  });

  it('checks fields reached through named fragments and unions', async () => {
    const query = 'query { thing { ...M } } fragment M on Model { name ownerNotes }';
    expect(await check(query, reader)).toBe('FORBIDDEN Model.ownerNotes');
  });

  it('checks fields even under @skip (conservative)', async () => {
    expect(await check('query($s: Boolean!) { jobs { id } unmapped @skip(if: $s) }', reader, { s: true })).toBe('FORBIDDEN Query.unmapped');
  });
});
