import { allow, deny, rule, type IRule } from 'graphql-shield';
import { forbidden, unauthenticated } from '../../lib/errors.js';
import type { Identity } from '../../lib/identity.js';

/**
 * What every RBAC rule sees. Rules read (context, args) only: at the gateway they run before any
 * resolver, with no parent (DESIGN §4). A rule that reads `parent` denies there.
 */
export interface RuleContext {
  identity: Identity | null;
  /** True for the gateway's own calls (principal lookup), never for a user request. */
  system: boolean;
  _shield?: { cache: Record<string, unknown> };
}

/** Any graphql-shield rule (its public interface; logic rules implement it too). */
export type Rule = Pick<IRule, 'resolve'>;

export { allow, deny };

/** Any authenticated user or API key. */
export const isAuthenticated = rule({ cache: 'contextual' })(
  (_parent, _args, ctx: RuleContext) => ctx.identity !== null || unauthenticated(),
);

/** The gateway itself (its system token), e.g. to look up the principal behind a credential. */
export const isGatewaySystem = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) => ctx.system);

/** Any verified internal caller: federation plumbing (`_service`, `_entities`). */
export const isInternalCaller = rule({ cache: 'contextual' })(
  (_parent, _args, ctx: RuleContext) => ctx.system || ctx.identity !== null,
);

/** The request resolved to a project the caller holds a role in (LLMariner §9 role resolution). */
export const inProject = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) => {
  if (!ctx.identity) return unauthenticated();
  return ctx.identity.project !== null || noProject(ctx.identity);
});

function noProject(identity: Identity): Error {
  return forbidden(`No project context: ${identity.projectRefusal ?? 'the caller has no role in any project'}`);
}

const scopeRules = new Map<string, Rule>();

/** The project context grants `<resource>.<capability>` (e.g. `api.model.read`). */
export function hasScope(resource: string, capability: 'read' | 'write'): Rule {
  const scope = `${resource}.${capability}`;
  let existing = scopeRules.get(scope);
  if (!existing) {
    existing = rule(`scope:${scope}`, { cache: 'contextual' })((_parent, _args, ctx: RuleContext) => {
      if (!ctx.identity) return unauthenticated();
      if (!ctx.identity.project) return noProject(ctx.identity);
      return ctx.identity.project.scopes.includes(scope) || forbidden(`Missing scope ${scope} in project ${ctx.identity.project.projectId}`);
    });
    scopeRules.set(scope, existing);
  }
  return existing;
}
