// What the tests set up through the public API (with the admin's API token, as castctl
// would), and the page helpers they share.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { expect, type Page } from "@playwright/test";
import { clients, type Clients } from "../src/clients";
import { PrincipalKind } from "../src/gen/castplane/v1/accounts_pb";
import { ServiceType } from "../src/gen/castplane/v1/common_pb";

export const baseUrl = () => {
  const url = process.env.CASTPLANE_URL;
  if (!url) throw new Error("CASTPLANE_URL is not set: run through playwright (global setup)");
  return url;
};

export function apiAs(token: string): Clients {
  return clients(
    createGrpcWebTransport({
      baseUrl: baseUrl(),
      interceptors: [(next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      }],
    }),
  );
}

export const admin = () => apiAs(process.env.CASTPLANE_ADMIN_TOKEN!);

export const unique = () => randomBytes(4).toString("hex");

export interface Reseller {
  id: string;
  name: string;
  primaryCustomerId: string;
  email: string;
  password: string;
  api: Clients;
}

/** A reseller allowed Icecast and video, with a console login and its own API token. */
export async function newReseller(
  name: string,
  limits: Record<string, bigint | undefined> = {},
): Promise<Reseller> {
  const a = admin();
  const lim = Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, v === undefined ? {} : { max: v }]));
  const r = await a.accounts.createReseller({
    reseller: {
      displayName: name,
      allowedServiceTypes: [ServiceType.ICECAST, ServiceType.VIDEO],
      limits: lim,
    },
  });
  const email = `reseller-${unique()}@example.com`;
  const password = `pw-${unique()}-${unique()}`;
  await a.logins.setLogin({ principalKind: PrincipalKind.RESELLER, principalId: r.id, email, password });
  const token = await a.accounts.createApiToken({
    principalKind: PrincipalKind.RESELLER,
    principalId: r.id,
    description: "browser test",
  });
  return { id: r.id, name, primaryCustomerId: r.primaryCustomerId, email, password, api: apiAs(token.secret) };
}

/** A link of the side menu. */
export function nav(page: Page, name: string) {
  return page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true });
}

export async function signIn(page: Page, email: string, password: string) {
  await page.goto(`${baseUrl()}/`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Dashboard" })).toBeVisible();
}

const here = path.dirname(fileURLToPath(import.meta.url));
const shots = path.resolve(here, "../../docs/screenshots");

/** Saves a screenshot for the README. */
export async function screenshot(page: Page, name: string) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** ffmpeg feeding a 440 Hz tone to an Icecast mount, as a broadcaster would. */
export function sineSource(host: string, port: number, password: string): ChildProcess {
  return spawn(
    "ffmpeg",
    [
      "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440",
      "-c:a", "libmp3lame", "-b:a", "128k", "-content_type", "audio/mpeg", "-f", "mp3",
      `icecast://source:${password}@${host}:${port}/live`,
    ],
    { stdio: "ignore" },
  );
}

/** Media files made by the real ffmpeg, as a person would upload them. */
function ffmpeg(name: string, args: string[]): string {
  const out = path.join(mkdtempSync(path.join(tmpdir(), "castplane-e2e-")), name);
  const run = spawnSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-y", ...args, out], { stdio: "inherit" });
  if (run.status !== 0) throw new Error(`ffmpeg could not make ${name}`);
  return out;
}

/** An MP3 of a sine tone, `seconds` long, at 128 kbps. */
export function toneMp3(name: string, seconds: number, frequency = 440): string {
  return ffmpeg(name, ["-f", "lavfi", "-i", `sine=frequency=${frequency}:duration=${seconds}`, "-c:a", "libmp3lame", "-b:a", "128k"]);
}

/** A small H.264 MP4 of the test pattern. */
export function clipMp4(name: string, seconds: number): string {
  return ffmpeg(name, [
    "-f", "lavfi", "-i", `testsrc=size=320x240:rate=10:duration=${seconds}`,
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
  ]);
}
