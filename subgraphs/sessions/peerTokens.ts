import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER } from '../../lib/tunnel.js';

/**
 * How a request to a sessions replica's peer endpoint (peers.ts) says which cluster it is for and
 * proves that it comes from the platform: the sessions replicas forwarding to each other, and the
 * inference and jobs processes that reach agents this way (remoteTunnels.ts).
 */

/** The cluster a peer request is for. */
export const PEER_CLUSTER_HEADER = 'x-mariner-peer-cluster';
/** The HMAC token that authenticates a peer request (peerTokens). */
export const PEER_TOKEN_HEADER = 'x-mariner-peer-token';
const PEER_TOKEN_TTL_MS = 60_000;
/** Tokens are accepted up to this far in the future (clock skew between replicas). */
const PEER_TOKEN_SKEW_MS = 60_000;

/**
 * What a peer token is bound to: the cluster and the request as the agent will run it, its method and
 * path, and for an upgrade the method and headers inside (lib/tunnel.ts), which name what runs.
 */
function peerRequestOf(headers: IncomingHttpHeaders | OutgoingHttpHeaders): string[] {
  const text = (name: string) => (headers[name] === undefined ? '' : String(headers[name]));
  return [String(headers[':method'] ?? 'GET'), text(':path'), text(UPGRADE_HEADER), text(UPGRADE_METHOD_HEADER), text(UPGRADE_HEADERS_HEADER)];
}

/**
 * Tokens for peer requests: `v2.<expiry ms>.<nonce>.<HMAC-SHA256>`, under a key derived from the internal
 * token secret, so only replicas sharing it can call each other. The MAC covers the cluster, the expiry,
 * a random nonce and the request (peerRequestOf): a token captured on the pod network cannot be used for
 * another cluster, method or path, and the endpoint takes each nonce once, so it cannot be replayed for
 * the same request either. Synchronous, so `request()` stays synchronous.
 */
export function peerTokens(secret: string) {
  const key = createHmac('sha256', secret).update('mariner-sessions-peer-v2').digest();
  const mac = (clusterId: string, expires: number, nonce: string, request: string[]) =>
    createHmac('sha256', key)
      .update(JSON.stringify(['v2', clusterId, expires, nonce, ...request]))
      .digest();
  /** Nonces taken, with their token's expiry; swept as they expire. */
  const used = new Map<string, number>();
  let swept = 0;
  return {
    /** A token for one request (`headers`: its `:method`, `:path` and upgrade headers) to a cluster. */
    mint(clusterId: string, headers: OutgoingHttpHeaders, now = Date.now()): string {
      const expires = now + PEER_TOKEN_TTL_MS;
      const nonce = randomBytes(12).toString('base64url');
      return `v2.${expires}.${nonce}.${mac(clusterId, expires, nonce, peerRequestOf(headers)).toString('base64url')}`;
    },
    /** Whether the token was minted for this cluster and request, has not expired, and was not used before. */
    verify(clusterId: string, headers: IncomingHttpHeaders, token: unknown, now = Date.now()): boolean {
      if (typeof token !== 'string') return false;
      const [version, expiresRaw, nonce, signature, ...extra] = token.split('.');
      if (version !== 'v2' || !expiresRaw || !nonce || !signature || extra.length > 0 || !/^\d{1,15}$/.test(expiresRaw)) return false;
      const expires = Number(expiresRaw);
      if (expires <= now || expires > now + PEER_TOKEN_TTL_MS + PEER_TOKEN_SKEW_MS) return false;
      const given = Buffer.from(signature, 'base64url');
      const expected = mac(clusterId, expires, nonce, peerRequestOf(headers));
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false;
      if (now - swept > PEER_TOKEN_TTL_MS) {
        for (const [seen, until] of used) if (until <= now) used.delete(seen);
        swept = now;
      }
      if (used.has(nonce)) return false;
      used.set(nonce, expires);
      return true;
    },
  };
}
export type PeerTokens = ReturnType<typeof peerTokens>;
