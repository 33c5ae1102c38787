/** lib/: the small shared runtime pieces every component uses. */
export * from './config.js';
export * from './db.js';
export * from './errors.js';
export * from './http.js';
export * from './identity.js';
export * from './ids.js';
export * from './logging.js';
export * from './objectStore/index.js';
export * from './pagination.js';
export * from './subgraphServer.js';
