/**
 * How many operations may be open at once over graphql-ws: on one connection, and for one owner (a
 * user, or a cluster) across this replica's connections. A subscription holds an upstream share, a
 * subscriber queue and a socket's attention for as long as it is open, so both are bounded; a
 * subscribe past a bound is refused with RATE_LIMITED, and the operations already open go on.
 */
import { ErrorCode, MarinerError } from '../lib/errors.js';

/** What the limits see of a connection (gateway/subscriptionConnection.ts `ConnectionState`). */
export interface LimitedConnection {
  owner: string;
  /** graphql-ws's open operations of the connection, by id (it keeps them current). */
  operations: Record<string, unknown>;
}

export interface SubscriptionLimitsOptions {
  maxPerConnection: number;
  maxPerUser: number;
}

export function createSubscriptionLimits({ maxPerConnection, maxPerUser }: SubscriptionLimitsOptions) {
  const connectionsByOwner = new Map<string, Set<LimitedConnection>>();
  /** Operations open for an owner across its connections (graphql-ws counts the one being subscribed already). */
  const openFor = (owner: string) => [...(connectionsByOwner.get(owner) ?? [])].reduce((sum, c) => sum + Object.keys(c.operations).length, 0);

  return {
    /** A connection whose operations now count against its owner. */
    add(connection: LimitedConnection): void {
      const owned = connectionsByOwner.get(connection.owner) ?? new Set();
      owned.add(connection);
      connectionsByOwner.set(connection.owner, owned);
    },
    remove(connection: LimitedConnection): void {
      const owned = connectionsByOwner.get(connection.owner);
      owned?.delete(connection);
      if (owned?.size === 0) connectionsByOwner.delete(connection.owner);
    },
    /** Why the operation graphql-ws has just entered on this connection may not open; null when it may. */
    refusal(connection: LimitedConnection): MarinerError | null {
      // graphql-ws has entered this operation already: the limits compare counts that include it.
      if (Object.keys(connection.operations).length > maxPerConnection) {
        return new MarinerError(ErrorCode.RATE_LIMITED, `At most ${maxPerConnection} operations may be open on one connection: complete one first`);
      }
      if (openFor(connection.owner) > maxPerUser) {
        return new MarinerError(ErrorCode.RATE_LIMITED, `At most ${maxPerUser} operations may be open for one user: complete one first`);
      }
      return null;
    },
  };
}

export type SubscriptionLimits = ReturnType<typeof createSubscriptionLimits>;
