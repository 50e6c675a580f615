import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// `npm run dev` proxies API calls to a control plane on 127.0.0.1:7400 (CASTPLANE_API to
// change it); `npm run build` writes dist/, which castplane-control serves with --console-dir.
const api = process.env.CASTPLANE_API ?? "http://127.0.0.1:7400";

export default defineConfig({
  plugins: [preact()],
  build: { target: "es2022", sourcemap: true },
  server: {
    proxy: { "^/castplane\\.v1\\.": { target: api, changeOrigin: true } },
  },
});
