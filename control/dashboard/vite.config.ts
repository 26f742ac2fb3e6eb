/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// Node's process, without pulling Node's types into the page's build.
declare const process: { env: Record<string, string | undefined> };

// `SLUICE_API=https://127.0.0.1:6443 npm run dev` serves the page at
// http://localhost:5173/dashboard/ and proxies the API to that server
// (its certificate is not checked: a development cluster's is self-signed).
const api = process.env.SLUICE_API;

// The API server serves the built files under /dashboard/ (same origin as the
// Kubernetes API), so every asset URL is prefixed with it.
export default defineConfig({
  base: '/dashboard/',
  // JSX through esbuild's automatic runtime from Preact: no framework plugin.
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  server: api ? { proxy: { '/api': { target: api, changeOrigin: true, secure: false } } } : {},
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
