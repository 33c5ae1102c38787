import { RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { INTERNAL_TOKEN_HEADER } from '../lib/identity.js';
import type { GatewayContext } from './context.js';
import type { InternalTokenCache } from './internalTokenCache.js';

/**
 * A subgraph call: carries a short-lived internal identity token minted for that subgraph, with the
 * caller's identity, so the subgraph trusts nothing it did not get from the gateway (reused for the
 * same identity while young: internalTokenCache.ts).
 */
export class InternalDataSource extends RemoteGraphQLDataSource<GatewayContext> {
  constructor(
    private readonly subgraph: string,
    url: string,
    private readonly tokens: InternalTokenCache,
  ) {
    // Node's own fetch (undici, keep-alive): lighter per call than the default make-fetch-happen.
    super({ url, fetcher: globalThis.fetch as unknown as NonNullable<ConstructorParameters<typeof RemoteGraphQLDataSource>[0]>['fetcher'] });
  }

  override async willSendRequest({ request, context }: GraphQLDataSourceProcessOptions<GatewayContext>): Promise<void> {
    const ctx = context as Partial<GatewayContext>;
    if (!ctx.requestId) return; // health checks: no token, the subgraph refuses
    const cache = (ctx.internalTokens ??= new Map());
    let token = cache.get(this.subgraph);
    if (!token) {
      token = await this.tokens.tokenFor(this.subgraph, ctx.requestId, ctx.identity ?? null, ctx.worker ?? null);
      cache.set(this.subgraph, token);
    }
    request.http?.headers.set(INTERNAL_TOKEN_HEADER, token);
    request.http?.headers.set('x-request-id', ctx.requestId);
  }
}
