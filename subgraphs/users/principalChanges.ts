import type { Logger } from '../../lib/logging.js';
import { PRINCIPALS_CHANNEL, type PubSub } from '../../lib/pubsub.js';
import type { UsersContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';

/**
 * Tells every replica's gateway that principals of a tenant may have changed (PRINCIPALS_CHANNEL,
 * lib/pubsub.ts): the gateway caches who an API key or an OIDC user is (gateway/authentication.ts)
 * and drops the tenant's entries on each event, so a deleted key or a removed member stops working
 * within the delivery of one NOTIFY rather than the cache's TTL.
 *
 * A publication that fails is logged, not thrown: the change is committed and the caller is told so;
 * the gateway's TTL still bounds how long a cached principal may outlive it.
 */
export function principalChanges(pubsub: Pick<PubSub, 'publish'>, logger: Logger) {
  return async function principalsChanged(tenantId: string): Promise<void> {
    await pubsub
      .publish(PRINCIPALS_CHANNEL, tenantId)
      .catch((error: unknown) =>
        logger.error({ err: error, tenantId }, 'could not announce a principal change: gateways may accept the previous principal until their cache expires'),
      );
  };
}

/**
 * Every mutation of the users subgraph, publishing a principal change once it settles: what a
 * principal holds (lib/identity.ts `Principal`: the user, the key, the organization and project
 * roles, the projects an organization owner holds) is exactly what these mutations change, so the
 * announcement is made here, once, rather than in each resolver, and a mutation added later cannot
 * forget it. It comes after the resolver returns, so after its transaction committed: a gateway that
 * hears it and looks the principal up again reads the change. It also comes when the resolver failed,
 * as a resolver may fail after its write committed (a read that follows it); an announcement too many
 * costs the gateway one lookup per cached credential of the tenant, one too few a stale principal.
 * The payload is the caller's tenant (every mutation acts within it), empty for a call without one.
 * A write outside these mutations (the bootstrap at start) must announce itself.
 */
export function announcingPrincipalChanges(
  mutations: NonNullable<Resolvers<UsersContext>['Mutation']>,
  principalsChanged: (tenantId: string) => Promise<void>,
): NonNullable<Resolvers<UsersContext>['Mutation']> {
  const wrapped: Record<string, unknown> = {};
  for (const [name, resolver] of Object.entries(mutations)) {
    if (typeof resolver !== 'function') throw new Error(`users: Mutation.${name} must be a function to announce principal changes`);
    const resolve = resolver as (parent: unknown, args: unknown, ctx: UsersContext, info: unknown) => unknown;
    wrapped[name] = async (parent: unknown, args: unknown, ctx: UsersContext, info: unknown) => {
      try {
        return await resolve(parent, args, ctx, info);
      } finally {
        await principalsChanged(ctx.identity?.principal.tenantId ?? '');
      }
    };
  }
  return wrapped as NonNullable<Resolvers<UsersContext>['Mutation']>;
}
