import { createGateway } from '../gateway/index.js';
import type { OidcVerifier } from '../gateway/oidc.js';
import { defineComponent, type PublicRoutes } from '../lib/component.js';
import { createRestCompat } from '../rest-compat/index.js';
import { loadRoleScopes } from '../schema/rbac/roleScopes.js';
import { SUBGRAPH_NAMES, type SubgraphName } from '../schema/subgraphs.js';
import { refuseUpgrade } from './httpServers.js';

/**
 * The gateway component: the federated gateway on /graphql (it calls every subgraph) and the OpenAI
 * REST API on /v1, which translates to GraphQL on the gateway of its own process (the host's loopback
 * port, which stays open while the public port drains) and streams file bytes to the object store. It
 * lives here rather than in gateway/ because it joins two top-level parts, gateway/ and rest-compat/.
 */
export function createGatewayComponent(hooks: { oidc?: OidcVerifier | null } = {}) {
  return defineComponent({
    name: 'gateway',
    subgraphs: [],
    needs: { objectStore: true, pubsub: true, gateway: true, inferencePlane: true, apiCallSink: true, subgraphs: SUBGRAPH_NAMES },
    provides: ['gateway'],
    // '/' (a prefix of every path, so the longest match leaves the others theirs): the web console's redirect, and the 404 for the rest.
    public: {
      paths: ['/graphql', '/v1', '/v1/', '/console', '/console/', '/'],
      notFound: { error: 'not found: GraphQL is at /graphql, the OpenAI API at /v1' },
    },
    startingStatus: 'loading the supergraph',
    // The gateway reads most of lib/config: authentication, limits, subscriptions, the role table.
    settings: (config) => config,
    async create({ settings: config, objectStore, pubsub, gatewayUrl, inferencePlane, apiCallSink, subgraphUrl, tokens, secretKey, logger, observers }) {
      const subgraphUrls = Object.fromEntries(SUBGRAPH_NAMES.map((name) => [name, subgraphUrl[name]()])) as Record<SubgraphName, string>;
      const plugin = observers.requestPlugin('gateway');
      const gateway = await createGateway({
        config,
        subgraphUrls,
        tokens,
        logger,
        roleScopes: loadRoleScopes(config.roleScopesFile),
        // In process when the inference component runs beside it (`mariner up`), else over HTTP.
        inferencePlane,
        // The same for the API call records: written into the inference component's store, else over HTTP.
        apiCallSink,
        pubsub,
        consoleSecret: secretKey,
        ...(plugin ? { plugins: [plugin] } : {}),
        ...(hooks.oidc !== undefined ? { oidc: hooks.oidc } : {}),
      });
      observers.observeSubscriptions(() => gateway.sharedSubscriptions());
      const rest = createRestCompat({ graphqlUrl: gatewayUrl, inference: gateway.inference, objectStore, logger, usage: gateway.usage });
      const publicRoutes: PublicRoutes = {
        handle(req, res) {
          const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
          if (pathname === '/graphql') return void gateway.handle(req, res);
          if (pathname === '/v1' || pathname.startsWith('/v1/')) {
            // The web console uploads files with its session cookie (CSRF-checked as on /graphql).
            if ((pathname === '/v1/files' || pathname.startsWith('/v1/files/')) && !gateway.consoleCookieAsBearer(req, res)) return;
            return void rest.handle(req, res);
          }
          void gateway.handleConsole(req, res);
        },
        handleUpgrade(req, socket, head) {
          const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
          if (pathname === '/graphql') return gateway.handleUpgrade(req, socket, head);
          refuseUpgrade(socket);
        },
      };
      return {
        subgraphs: [],
        publicRoutes,
        stop: async () => {
          // First, while their connections and the gateway's subscriptions are still there to carry it:
          // streamed answers still open end with an error event. Then the gateway closes its graphql-ws
          // connections (1001, "server shutting down"), which would otherwise keep the server open.
          await rest.close();
          await gateway.stop();
        },
        exposed: { gateway },
      };
    },
  });
}

export const gatewayComponent = createGatewayComponent();
