import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * The console is served by the gateway at /console/ (gateway/console.ts), so its assets are built for
 * that base. `npm run dev:console` serves it with hot reload and sends /graphql (HTTP and WebSocket) and
 * /console/session to a platform on MARINER_URL (default http://127.0.0.1:8080, `npm start`).
 */
const platform = process.env['MARINER_URL'] ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1000 },
  server: {
    proxy: {
      '/graphql': { target: platform, ws: true },
      '/console/session': { target: platform },
    },
  },
});
