import type { Identity, InternalTokens, Principal, Worker } from '../lib/identity.js';

/** A token is minted again once this share of its lifetime has passed (the rest covers the request). */
const REUSE_SHARE = 0.5;

/**
 * The internal tokens the gateway sends to subgraphs, reused per identity and subgraph while more than
 * half their lifetime is left: minting is a signature, and a subgraph verifies a token it has seen
 * once from memory (lib/identity.ts). The key is the principal object itself (the authenticator's
 * cache hands out one per credential until something about it changes, then a new one) with the
 * project the request resolved to, so a changed principal never travels under an old token. A token
 * carries the request id it was first minted for; the gateway sends each request's own id beside it
 * (`x-request-id`), which is what subgraphs log. Calls without a user identity (the system's, a
 * worker's) are minted each time.
 */
export class InternalTokenCache {
  private readonly minted = new WeakMap<Principal, Map<string, { token: Promise<string>; renewAt: number }>>();

  constructor(private readonly tokens: InternalTokens) {}

  tokenFor(audience: string, requestId: string, identity: Identity | null, worker: Worker | null = null): Promise<string> {
    if (!identity || worker) return this.tokens.mint(audience, requestId, identity, false, worker);
    let byKey = this.minted.get(identity.principal);
    if (!byKey) this.minted.set(identity.principal, (byKey = new Map()));
    const project = identity.project;
    const key = `${audience} ${project ? `${project.organizationId}/${project.projectId}/${project.role}` : `none:${identity.projectRefusal ?? ''}`}`;
    const known = byKey.get(key);
    if (known && known.renewAt > Date.now()) return known.token;
    const token = this.tokens.mint(audience, requestId, identity);
    byKey.set(key, { token, renewAt: Date.now() + this.tokens.ttlSeconds * 1000 * REUSE_SHARE });
    token.catch(() => byKey.delete(key));
    return token;
  }
}
