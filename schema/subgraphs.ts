import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, type DocumentNode } from 'graphql';

/**
 * The subgraphs of the supergraph, in composition order. URLs in the composed supergraph are
 * placeholders: the gateway routes each subgraph by name to where it actually runs.
 */
export const SUBGRAPH_NAMES = [
  'users',
  'rbac',
  'files',
  'models',
  'clusters',
  'sessions',
  'inference',
  'jobs',
  'vectorstores',
  'batches',
  'responses',
  'audit',
] as const;
export type SubgraphName = (typeof SUBGRAPH_NAMES)[number];

export function subgraphSdl(name: SubgraphName): string {
  return readFileSync(fileURLToPath(new URL(`./${name}.graphql`, import.meta.url)), 'utf8');
}

export function subgraphTypeDefs(name: SubgraphName): DocumentNode {
  return parse(subgraphSdl(name));
}

export function placeholderUrl(name: SubgraphName): string {
  return `http://${name}.mariner.internal/graphql`;
}

/** The committed supergraph (`npm run compose` writes it). */
export function supergraphSdl(): string {
  return readFileSync(fileURLToPath(new URL('./supergraph.graphql', import.meta.url)), 'utf8');
}

/**
 * Subscriptions whose events answer one request (a streaming completion): never shared among
 * subscribers, unlike feeds (a job's logs, a cluster's tunnels) where identical subscriptions share
 * one upstream (DESIGN §3).
 */
export const PER_REQUEST_SUBSCRIPTIONS: ReadonlySet<string> = new Set(['chatCompletionStream', 'completionStream', 'chatCompletionChunks', 'completionChunks']);

/**
 * What a subscriber that joins a shared subscription late needs to see first, by the kind of feed:
 * - state feeds send the whole current state at once, then again on each change: a late joiner is
 *   handed the latest event;
 * - replayed feeds (a job's log from an offset) send history, then what follows: a late joiner is
 *   handed every event so far (or, when that history grew past the gateway's bound, its own upstream);
 * - any other subscription is a feed of changes from now on: a late joiner sees the next ones.
 */
export const STATE_SUBSCRIPTIONS: ReadonlySet<string> = new Set(['runtimesUpdated', 'runtimeScaling', 'clusterTunnels', 'jobUpdated', 'batchUpdated']);
export const REPLAYED_SUBSCRIPTIONS: ReadonlySet<string> = new Set(['jobLogs']);
