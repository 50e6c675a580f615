// The console in a real browser against a real control plane, agent and icecast2: what the
// operator guide says a reseller does, from sign-in to a stream playing in the page.
import { expect, test } from "@playwright/test";
import { ServiceType } from "../src/gen/castplane/v1/common_pb";
import { PrincipalKind } from "../src/gen/castplane/v1/accounts_pb";
import { admin, baseUrl, clipMp4, nav, newReseller, screenshot, signIn, sineSource, toneMp3, unique } from "./fleet";

test("a reseller creates a service with the Quick Wizard, starts it and its player plays", async ({ page }) => {
  const u = unique();
  const reseller = await newReseller(`Mid Reseller ${u}`, { listenerSlots: 1000n, services: 10n });
  for (const name of ["zeta Radio", "Alpha FM", "beta beats"]) {
    await reseller.api.accounts.createCustomer({ customer: { displayName: name } });
  }
  await signIn(page, reseller.email, reseller.password);
  const slots = page.locator('.usage[data-resource="listener_slots"]');
  await expect(slots).toContainText("0 used · limit 1000 · 1000 available");

  await page.getByRole("link", { name: "+ Media Service" }).click();
  const choices = page.getByTestId("customer-choices").locator("label");
  const expected = ["Alpha FM", "beta beats", `Mid Reseller ${u}`, "zeta Radio"];
  await expect(choices.locator(".choice-name")).toHaveText(expected);
  await expect(choices.locator(".badge")).toHaveText([
    "sub-account",
    "sub-account",
    "reseller (primary account)",
    "sub-account",
  ]);
  await screenshot(page, "wizard-customer");
  await page.getByRole("radio", { name: /Alpha FM/ }).check();
  await page.getByRole("button", { name: "Next: Media Service Type" }).click();

  await expect(page.getByRole("radio", { name: /Icecast 2/ })).toBeChecked();
  await expect(page.getByLabel("Use selected media as default in the future.")).not.toBeChecked();
  await page.getByRole("button", { name: "Next: General Configuration" }).click();

  await page.getByLabel("Name", { exact: true }).fill(`alpha-fm-${u}`);
  await page.getByLabel("Display name").fill("Alpha FM Live");
  await page.getByLabel("Max listeners").fill("100");
  await expect(page.locator('.usage-hint[data-resource="listener_slots"]')).toContainText(
    "Current usage: 0 used · limit 1000 · 1000 available",
  );
  await expect(page.locator('.usage-hint[data-resource="services"]')).toContainText("10 available");
  await screenshot(page, "wizard-configuration");
  await page.getByRole("button", { name: "Create service" }).click();

  await expect(page.getByRole("heading", { level: 1, name: "Alpha FM Live" })).toBeVisible();
  await page.getByRole("button", { name: "Start", exact: true }).click();
  const progress = page.locator(".action-progress");
  await expect(progress.getByRole("heading")).toHaveText("Start: SUCCEEDED", { timeout: 60_000 });
  await expect(progress.getByRole("status")).toHaveText("Start succeeded.");
  await expect(page.getByTestId("observed-state")).toContainText("running");

  // The source password stays hidden until asked for.
  const serviceId = page.url().split("/").pop()!;
  const connection = await reseller.api.services.getMediaServiceConnectionInfo({ id: serviceId });
  await expect(page.getByTestId("source-password")).not.toHaveText(connection.sourcePassword);
  await page.getByRole("button", { name: "Reveal password" }).click();
  await expect(page.getByTestId("source-password")).toHaveText(connection.sourcePassword);
  await page.getByRole("button", { name: "Hide password" }).click();

  const source = sineSource(connection.sourceHost, connection.sourcePort, connection.sourcePassword);
  try {
    await expect
      .poll(async () => (await reseller.api.services.getMediaService({ id: serviceId })).status?.stats?.sources ?? 0, {
        timeout: 30_000,
      })
      .toBe(1);
    const audio = page.getByLabel("Audio stream of Alpha FM Live");
    await audio.evaluate((a: HTMLAudioElement) => a.play());
    await expect.poll(() => audio.evaluate((a: HTMLAudioElement) => a.currentTime), { timeout: 30_000 }).toBeGreaterThan(0);
    await screenshot(page, "service");
  } finally {
    source.kill("SIGTERM");
  }
  await page.getByLabel("Audio stream of Alpha FM Live").evaluate((a: HTMLAudioElement) => a.pause());
  await page.getByRole("button", { name: "Stop", exact: true }).click();
  await expect(page.locator(".action-progress").getByRole("heading")).toHaveText("Stop: SUCCEEDED", { timeout: 60_000 });

  // Listed under Media Services (a customer's), found by search; not under My Services.
  await nav(page, "Media Services").click();
  await page.getByLabel("Search by name").fill(`ALPHA-FM-${u}`);
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page.getByRole("link", { name: `alpha-fm-${u}` })).toBeVisible();
  await nav(page, "My Services").click();
  await expect(page.getByText("No services yet.")).toBeVisible();

  // The dashboard now counts the service and lists its actions, newest first.
  await nav(page, "Dashboard").click();
  await expect(slots).toContainText("100 used · limit 1000 · 900 available");
  const recent = page.getByRole("region", { name: "Recent actions" }).getByRole("row");
  await expect(recent.nth(1)).toContainText("Stop");
  await expect(recent.nth(2)).toContainText("Start");
  await screenshot(page, "dashboard");
});

test("a quota refusal is shown beside the field that asked too much", async ({ page }) => {
  const reseller = await newReseller(`Small Reseller ${unique()}`, { listenerSlots: 50n });
  await signIn(page, reseller.email, reseller.password);
  await page.goto(`${baseUrl()}/create?customer=${reseller.primaryCustomerId}`);
  await page.getByRole("button", { name: "Next: General Configuration" }).click();
  await page.getByLabel("Name", { exact: true }).fill("too-big");
  const listeners = page.getByLabel("Max listeners");
  await listeners.fill("80");
  await page.getByRole("button", { name: "Create service" }).click();
  await expect(listeners).toHaveAttribute("aria-invalid", "true");
  const error = page.locator("#f-media-service-max-listeners-error");
  await expect(error).toHaveText("Over your limit for listener slots: you asked for 80, 50 available.");
  await expect(listeners).toHaveAttribute("aria-describedby", /f-media-service-max-listeners-error/);
  await expect(page.getByRole("alert")).toContainText("you asked for 80, 50 available");
  await screenshot(page, "wizard-quota");
  // Nothing was created.
  const list = await reseller.api.services.listMediaServices({});
  expect(list.mediaServices).toHaveLength(0);
});

test("a video service: the saved default type is preselected, and deleting it needs typed confirmation", async ({ page }) => {
  const u = unique();
  const reseller = await newReseller(`Video Reseller ${u}`);
  const customer = await reseller.api.accounts.createCustomer({ customer: { displayName: "Cinema Club" } });
  await signIn(page, reseller.email, reseller.password);

  // From the Media Services listing: "Create a new server".
  await nav(page, "Media Services").click();
  await page.getByRole("link", { name: "Create a new server" }).click();
  await page.getByRole("radio", { name: /Cinema Club/ }).check();
  await page.getByRole("button", { name: "Next: Media Service Type" }).click();
  await page.getByRole("radio", { name: /Live and on-demand video/ }).check();
  await page.getByLabel("Use selected media as default in the future.").check();
  await page.getByRole("button", { name: "Next: General Configuration" }).click();
  await expect(page.getByLabel(/AutoDJ/)).toHaveCount(0);
  await page.getByLabel("Name", { exact: true }).fill(`tv-${u}`);
  await page.getByRole("button", { name: "Create service" }).click();
  await expect(page.getByRole("heading", { level: 1, name: `tv-${u}` })).toBeVisible();
  const serviceUrl = page.url();

  // From the Customer Overview: "Create Service" — the video type is now preselected.
  await nav(page, "Customers").click();
  await page.getByRole("link", { name: "Cinema Club" }).click();
  await expect(page.getByText("Customer Overview")).toBeVisible();
  await screenshot(page, "customer-overview");
  await page.getByRole("link", { name: "Create Service" }).click();
  await expect(page.getByRole("radio", { name: /Live and on-demand video/ })).toBeChecked();
  await expect(page.getByRole("radio", { name: /Icecast 2/ })).not.toBeChecked();
  expect(new URL(page.url()).searchParams.get("customer")).toBe(customer.id);

  await page.goto(serviceUrl);
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  const dialog = page.getByRole("dialog", { name: `Delete tv-${u}?` });
  await expect(dialog.locator(".plan-destroyed")).toContainText("all uploaded video files of the service (permanently)");
  const confirm = dialog.getByLabel(`Type tv-${u} to confirm permanent deletion`);
  const remove = dialog.getByRole("button", { name: "Delete permanently" });
  await expect(remove).toBeDisabled();
  await confirm.fill("tv-");
  await expect(remove).toBeDisabled();
  await confirm.fill(`tv-${u}`);
  await expect(remove).toBeEnabled();
  await screenshot(page, "delete-video");
  await remove.click();
  await expect(page.getByRole("status").filter({ hasText: "has been deleted" })).toBeVisible({ timeout: 60_000 });
  const list = await reseller.api.services.listMediaServices({});
  expect(list.mediaServices).toHaveLength(0);
});

test("another reseller's service URL shows not found", async ({ page }) => {
  const owner = await newReseller(`Owner ${unique()}`);
  const service = await owner.api.services.createMediaService({
    mediaService: {
      customerId: owner.primaryCustomerId,
      type: ServiceType.ICECAST,
      name: `private-${unique()}`,
      maxListeners: 10,
      maxBitrateKbps: 128,
      diskQuotaMb: 10n,
      bandwidthGbPerMonth: 1n,
    },
  });
  const other = await newReseller(`Other ${unique()}`);
  await signIn(page, other.email, other.password);
  await page.goto(`${baseUrl()}/services/${service.id}`);
  await expect(page.getByRole("heading", { level: 1, name: "Not found" })).toBeVisible();
  await expect(page.getByText("does not exist, or is not yours to see")).toBeVisible();
  await expect(page.getByText(service.name)).toHaveCount(0);
});

test("signing in by keyboard, a wrong password, signing out", async ({ page }) => {
  const reseller = await newReseller(`Keys ${unique()}`);
  await page.goto(`${baseUrl()}/`);
  await expect(page.getByRole("heading", { name: "Sign in to castplane" })).toBeVisible();
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("Email")).toBeFocused();
  await page.keyboard.type(reseller.email);
  await page.keyboard.press("Tab");
  await page.keyboard.type("not the password");
  await page.keyboard.press("Enter");
  await expect(page.getByRole("alert")).toHaveText("wrong email or password");
  await expect(page.getByLabel("Password")).toHaveValue("");
  await page.getByLabel("Password").focus();
  await page.keyboard.type(reseller.password);
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { level: 1, name: "Dashboard" })).toBeVisible();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByText("You have signed out.")).toBeVisible();
  await page.goto(`${baseUrl()}/services`);
  await expect(page.getByRole("heading", { name: "Sign in to castplane" })).toBeVisible();
});

test("the admin sees resellers with their limits and nodes with liveness and capabilities", async ({ page }) => {
  const email = `admin-${unique()}@example.com`;
  const password = `admin-${unique()}-${unique()}`;
  await admin().logins.setLogin({ principalKind: PrincipalKind.ADMIN, principalId: "", email, password });
  const reseller = await newReseller(`Listed Reseller ${unique()}`, { services: 7n });
  await signIn(page, email, password);
  await nav(page, "Resellers").click();
  const row = page.getByRole("row").filter({ hasText: reseller.name });
  await expect(row).toContainText("Icecast, Video");
  await expect(row.getByRole("cell").nth(3)).toHaveText("7");
  await screenshot(page, "resellers");
  await nav(page, "Nodes").click();
  const node = page.getByRole("region", { name: "console-host" });
  await expect(node).toContainText("online");
  await expect(node.locator(".capabilities")).toContainText("Icecast: icecast2");
  await screenshot(page, "nodes");
});

test("readable on a phone-width screen", async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  const reseller = await newReseller(`Phone ${unique()}`);
  await reseller.api.services.createMediaService({
    mediaService: {
      customerId: reseller.primaryCustomerId,
      type: ServiceType.ICECAST,
      name: "pocket-fm",
      displayName: "Pocket FM",
      maxListeners: 10,
      maxBitrateKbps: 128,
      diskQuotaMb: 10n,
      bandwidthGbPerMonth: 1n,
    },
  });
  await signIn(page, reseller.email, reseller.password);
  const menu = page.getByRole("button", { name: "Menu" });
  await expect(menu).toHaveAttribute("aria-expanded", "false");
  await expect(page.getByRole("navigation", { name: "Main" })).toBeHidden();
  await menu.click();
  await nav(page, "My Services").click();
  await page.getByRole("link", { name: "pocket-fm" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Pocket FM" })).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await screenshot(page, "service-phone");
});

test("a customer's media library: tracks uploaded with a progress bar each, a quota refusal beside the control, a delete confirmed", async ({ page }) => {
  const u = unique();
  const reseller = await newReseller(`Library Reseller ${u}`);
  const customer = await reseller.api.accounts.createCustomer({ customer: { displayName: "Night Owl Radio" } });
  // The customer's disk quota is its services': 1 MB.
  await reseller.api.services.createMediaService({
    mediaService: {
      customerId: customer.id,
      type: ServiceType.ICECAST,
      name: `owl-${u}`,
      maxListeners: 10,
      maxBitrateKbps: 128,
      diskQuotaMb: 1n,
      bandwidthGbPerMonth: 1n,
    },
  });
  const tone = toneMp3("Evening Tone.mp3", 3);
  const chime = toneMp3("Chime.mp3", 2, 880);
  const long = toneMp3("Long Set.mp3", 70, 330);

  await signIn(page, reseller.email, reseller.password);
  await nav(page, "Customers").click();
  await page.getByRole("link", { name: "Night Owl Radio" }).click();
  await page.getByRole("link", { name: "Open the media library" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Media library" })).toBeVisible();
  await expect(page.getByText("No tracks yet.")).toBeVisible();

  // Two files at once: one row each, each bar reaching 100 %, both listed with their duration.
  const chooser = page.getByLabel("Upload tracks");
  await chooser.setInputFiles([tone, chime]);
  for (const [name, length] of [["Evening Tone.mp3", "0:03"], ["Chime.mp3", "0:02"]]) {
    const bar = page.getByRole("progressbar", { name: `Upload of ${name}` });
    await expect(bar).toHaveJSProperty("value", 100);
    const upload = page.locator(`.upload[data-file="${name}"]`);
    await expect(upload.locator(".upload-percent")).toHaveText("100 %");
    await expect(upload.locator(".upload-status")).toHaveText("Uploaded.");
    const row = page.getByRole("row").filter({ hasText: name });
    await expect(row).toContainText(length);
    await expect(row).toContainText("mp3");
    await expect(row).toContainText(/1[23]\d kbps/);
  }
  const listed = await reseller.api.library.listMediaTracks({ customerId: customer.id });
  expect(listed.mediaTracks.map((t) => t.displayName).sort()).toEqual(["Chime.mp3", "Evening Tone.mp3"]);

  // Over the quota: refused beside the control, with what was asked and what is available.
  await chooser.setInputFiles(long);
  const error = page.locator("#f-upload-files-error");
  await expect(error).toContainText(/Not enough disk space for Long Set\.mp3: you asked for 1\.1 MB, \d+ KB available\./);
  await expect(chooser).toHaveAttribute("aria-invalid", "true");
  await expect(chooser).toHaveAttribute("aria-describedby", /f-upload-files-error/);
  await expect(page.locator("#f-upload-files-hint")).toContainText("bytes available");
  await expect(page.locator('.upload[data-file="Long Set.mp3"] .upload-status')).toContainText("Not enough disk space");
  await screenshot(page, "media-library");
  expect((await reseller.api.library.listMediaTracks({ customerId: customer.id })).mediaTracks).toHaveLength(2);

  // Delete, after the confirmation.
  await page.getByRole("button", { name: "Delete Chime.mp3" }).click();
  const dialog = page.getByRole("dialog", { name: "Delete Chime.mp3?" });
  await expect(dialog).toContainText("This cannot be undone.");
  await dialog.getByRole("button", { name: "Delete track" }).click();
  await expect(page.getByRole("status").filter({ hasText: "Chime.mp3 has been deleted." })).toBeVisible();
  await expect(page.getByRole("row").filter({ hasText: "Chime.mp3" })).toHaveCount(0);

  // The customer itself finds its library in the side menu, and deletes the last track there.
  const email = `owl-${u}@example.com`;
  const password = `pw-${unique()}-${unique()}`;
  await reseller.api.logins.setLogin({ principalKind: PrincipalKind.CUSTOMER, principalId: customer.id, email, password });
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(page, email, password);
  await nav(page, "Media library").click();
  await expect(page.getByRole("row").filter({ hasText: "Evening Tone.mp3" })).toContainText("0:03");
  // Readable at phone width: the table scrolls within its card, the page does not.
  await page.setViewportSize({ width: 390, height: 844 });
  expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
  await page.getByRole("button", { name: "Delete Evening Tone.mp3" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("dialog", { name: "Delete Evening Tone.mp3?" }).getByRole("button", { name: "Delete track" }).click();
  await expect(page.getByText("No tracks yet.")).toBeVisible();
  expect((await reseller.api.library.listMediaTracks({ customerId: customer.id })).mediaTracks).toHaveLength(0);
});

test("a video service's files: uploaded with progress, listed, deleted", async ({ page }) => {
  const u = unique();
  const reseller = await newReseller(`Clips Reseller ${u}`);
  const service = await reseller.api.services.createMediaService({
    mediaService: {
      customerId: reseller.primaryCustomerId,
      type: ServiceType.VIDEO,
      name: `clips-${u}`,
      displayName: "Clips TV",
      maxListeners: 10,
      maxBitrateKbps: 2000,
      diskQuotaMb: 20n,
      bandwidthGbPerMonth: 1n,
    },
  });
  const clip = clipMp4("Holiday Clip.mp4", 2);
  await signIn(page, reseller.email, reseller.password);
  await page.goto(`${baseUrl()}/services/${service.id}`);
  const files = page.getByRole("region", { name: "Video files" });
  await expect(files.getByText("No video files yet.")).toBeVisible();
  await files.getByLabel("Upload video files").setInputFiles(clip);
  await expect(files.getByRole("progressbar", { name: "Upload of Holiday Clip.mp4" })).toHaveJSProperty("value", 100);
  await expect(files.locator('.upload[data-file="Holiday Clip.mp4"] .upload-status')).toHaveText("Uploaded.");
  const row = files.getByRole("row").filter({ hasText: "Holiday Clip.mp4" });
  await expect(row).toContainText("0:02");
  await expect(row).toContainText("mp4 (h264)");
  const listed = await reseller.api.library.listVideoFiles({ mediaServiceId: service.id });
  expect(listed.videoFiles).toHaveLength(1);
  await expect(row.getByRole("link", { name: "Holiday Clip.mp4" })).toHaveAttribute("href", listed.videoFiles[0].url);
  await files.scrollIntoViewIfNeeded();
  await screenshot(page, "video-files");

  await row.getByRole("button", { name: "Delete Holiday Clip.mp4" }).click();
  await page.getByRole("dialog", { name: "Delete Holiday Clip.mp4?" }).getByRole("button", { name: "Delete video file" }).click();
  await expect(files.getByText("No video files yet.")).toBeVisible();
  expect((await reseller.api.library.listVideoFiles({ mediaServiceId: service.id })).videoFiles).toHaveLength(0);
});
