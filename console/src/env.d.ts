/// <reference types="vite/client" />

// hls.js ships one set of types; its light build (no subtitles, alternate audio or DRM, which
// castplane's live HLS does not use) has the same API.
declare module "hls.js/light" {
  export { default } from "hls.js";
}
