import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import type { AgentTunnels } from '../../lib/agentContract.js';
import type { Knex } from '../../lib/db.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import { PeerClient } from './peerClient.js';
import { peerTokens } from './peerTokens.js';
import { TunnelDirectory } from './tunnelDirectory.js';

/**
 * The agents' tunnels as a process without the sessions component sees them (`mariner serve inference`,
 * `mariner serve jobs`): which clusters are connected, from the sessions replicas' tunnel directory
 * (kept current by their announcements and heartbeats), and each request sent to the peer endpoint of
 * a replica holding the cluster's tunnels — the protocol sessions replicas use among themselves, with
 * the same peer tokens and the same failures (peers.ts). A caller names clusters exactly as it does to
 * the in-process registry: those of its tenant (`connectedClusters` filters by the tenant the agent
 * authenticated for, as the holding replica wrote it), or those its own rows name (a runtime's report,
 * a job's placement).
 */
export class RemoteAgentTunnels implements AgentTunnels {
  private readonly peers: PeerClient;

  private constructor(
    private readonly directory: TunnelDirectory,
    secretKey: string,
  ) {
    this.peers = new PeerClient(directory, peerTokens(secretKey));
  }

  /** Reads the directory (`<schema>.cluster_tunnels`) once, then follows it until `close`. */
  static async start(options: {
    knex: Knex;
    schema: string;
    pubsub: PubSub;
    secretKey: string;
    heartbeatMs: number;
    logger: Logger;
  }): Promise<RemoteAgentTunnels> {
    const directory = new TunnelDirectory({
      knex: options.knex,
      schema: options.schema,
      pubsub: options.pubsub,
      heartbeatMs: options.heartbeatMs,
      logger: options.logger,
    });
    await directory.start();
    return new RemoteAgentTunnels(directory, options.secretKey);
  }

  request(clusterId: string, headers: OutgoingHttpHeaders, options?: { endStream?: boolean }): ClientHttp2Stream {
    return this.peers.request(clusterId, headers, options);
  }

  connectedClusters(tenantId: string): string[] {
    return this.directory.clustersOf(tenantId);
  }

  allConnectedClusters(): string[] {
    return this.directory.allClusters();
  }

  onChange(listener: (clusterId: string) => void): () => void {
    return this.directory.onChange(listener);
  }

  /** Stops following the directory and closes the sessions to the replicas. */
  async close(): Promise<void> {
    this.peers.close();
    await this.directory.close();
  }
}
