import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // Node loads graphql's CommonJS build everywhere (the Apollo packages require it); Vite would
    // pick its .mjs build for our imports, and two copies of graphql cannot share a schema.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.mariner/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores on the CI machine: two files at a time, each with its own database.
    maxWorkers: 2,
    // The AWS SDK warns once per process that later releases want Node 22.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
