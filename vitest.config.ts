import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.mariner/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores on the CI machine: two files at a time, each with its own database.
    maxWorkers: 2,
  },
});
