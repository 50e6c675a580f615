// Starts the fleet the tests run against: `console-fixture` (integration-tests) runs a real
// control plane serving the built console, and a real agent with icecast2 and nginx-rtmp. Its
// first stdout line says where; the tests read that from the environment.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");

export default async function globalSetup() {
  const binary = process.env.CASTPLANE_CONSOLE_FIXTURE ?? path.join(root, "target/debug/console-fixture");
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`cargo build -p castplane-integration-tests --bin console-fixture\``);
  }
  const dist = path.resolve(here, "../dist");
  if (!existsSync(path.join(dist, "index.html"))) {
    throw new Error(`${dist} has no build: run \`npm run build\` in console/`);
  }
  const fixture = spawn(binary, [dist], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: fixture.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the fleet did not start within 120 s")), 120_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    fixture.once("exit", (code) => reject(new Error(`console-fixture exited early (${code})`)));
  });
  const fleet = JSON.parse(first) as { url: string; adminToken: string; caPath: string; nodeId: string };
  process.env.CASTPLANE_URL = fleet.url;
  process.env.CASTPLANE_ADMIN_TOKEN = fleet.adminToken;
  process.env.CASTPLANE_NODE_ID = fleet.nodeId;
  // The test workers' own API calls (setup through the public API) trust the fleet's CA.
  process.env.NODE_EXTRA_CA_CERTS = fleet.caPath;

  return async () => {
    const exited = new Promise((resolve) => fixture.once("exit", resolve));
    fixture.kill("SIGTERM");
    await exited;
  };
}
