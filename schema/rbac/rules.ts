import { allow, deny, or, rule, type IRule } from 'graphql-shield';
import { forbidden, unauthenticated } from '../../lib/errors.js';
import type { Identity, Worker } from '../../lib/identity.js';

/**
 * What every RBAC rule sees. Rules read (context, args) only: at the gateway they run before any
 * resolver, with no parent (DESIGN §4). A rule that reads `parent` denies there.
 */
export interface RuleContext {
  identity: Identity | null;
  /** True for the gateway's own calls (principal lookup), never for a user request. */
  system: boolean;
  /** A cluster agent authenticated by its registration key; absent or null for everyone else. */
  worker?: Worker | null;
  _shield?: { cache: Record<string, unknown> };
}

/** Any graphql-shield rule (its public interface; logic rules implement it too). */
export type Rule = Pick<IRule, 'resolve'>;

export { allow, deny };

/** Why a caller without a user identity is refused: a worker is authenticated, just not for this. */
function noIdentity(ctx: RuleContext): Error {
  return ctx.worker ? forbidden('A registration key may only call the worker API') : unauthenticated();
}

/** Any authenticated user or API key. */
export const isAuthenticated = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) => ctx.identity !== null || noIdentity(ctx));

/** The gateway itself (its system token), e.g. to look up the principal behind a credential. */
export const isGatewaySystem = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) => ctx.system);

/** A cluster agent (registration key), for the worker API (LLMariner ClustersWorkerService). */
export const isWorker = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) =>
  ctx.worker ? true : ctx.identity ? forbidden('Only cluster agents (registration keys) may call this') : unauthenticated(),
);

/** Any verified internal caller: federation plumbing (`_service`, `_entities`). */
export const isInternalCaller = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) => ctx.system || ctx.identity !== null || Boolean(ctx.worker));

/** The request resolved to a project the caller holds a role in (LLMariner §9 role resolution). */
export const inProject = rule({ cache: 'contextual' })((_parent, _args, ctx: RuleContext) => {
  if (!ctx.identity) return noIdentity(ctx);
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
      if (!ctx.identity) return noIdentity(ctx);
      if (!ctx.identity.project) return noProject(ctx.identity);
      return ctx.identity.project.scopes.includes(scope) || forbidden(`Missing scope ${scope} in project ${ctx.identity.project.projectId}`);
    });
    scopeRules.set(scope, existing);
  }
  return existing;
}

/** Passes when any of the rules passes (graphql-shield `or`). */
export function anyOf(...rules: Rule[]): Rule {
  return or(...(rules as IRule[]));
}
