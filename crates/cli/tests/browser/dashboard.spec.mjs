// The dashboard in Debian's Chromium, driven by playwright-core (run by crates/cli/tests/dashboard_browser.rs,
// which starts `ferry serve` on the quickstart's data with one bad CSV row and sets the environment below).
//
//   FERRY_URL, FERRY_WRITE_KEY, FERRY_READ_KEY, PLAYWRIGHT_DIR (holds node_modules/playwright-core),
//   SCREENSHOT_DIR, USER_DATA_DIR (a fresh Chromium profile)
//
// Each step prints `ok: <step>`; the first failure throws (exit code 1) after a screenshot of the page.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.PLAYWRIGHT_DIR, "package.json"));
const { chromium } = require("playwright-core");

const base = process.env.FERRY_URL;
const shots = process.env.SCREENSHOT_DIR;
const TIMEOUT = 20_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function signIn(page, key) {
  await page.goto(`${base}/`);
  await page.waitForURL(/\/signin$/);
  // Keyboard only: the key field has focus; type the key and press Enter.
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Overview" }).waitFor();
}

async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/signin$/);
}

/** Reloads `url` until `text` is on the page (a job runs in the background). */
async function waitForText(page, url, text) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await page.goto(url);
    if ((await page.content()).includes(text)) return;
    if (Date.now() > deadline) throw new Error(`${url} never showed ${JSON.stringify(text)}`);
    await page.waitForTimeout(250);
  }
}

const context = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
context.setDefaultTimeout(TIMEOUT);
const page = context.pages()[0] ?? (await context.newPage());
try {
  // Sign in with a write key; the overview lists the flows and the open failure.
  await signIn(page, process.env.FERRY_WRITE_KEY);
  check((await page.locator("table.flows").innerText()).includes("products"), "the overview lists the products flow");
  await page.screenshot({ path: path.join(shots, "overview-1280.png"), fullPage: true });
  console.log("ok: signed in");

  // The failed record from the bad row: failures → its group → the record.
  await page.getByRole("link", { name: "Failures", exact: true }).click();
  await page.getByRole("heading", { name: "Failures" }).waitFor();
  check((await page.content()).includes("price.amount"), "the failure names the field price.amount");
  await page.locator('table.groups a[href*="/failures/group"]').first().click();
  await page.getByRole("link", { name: "BAD-9001" }).click();
  await page.getByRole("heading", { name: "Failed record BAD-9001" }).waitFor();
  await page.screenshot({ path: path.join(shots, "failure-1280.png"), fullPage: true });

  // Fix the payload (the price) and save: validated on the server; then replay.
  const editor = page.getByLabel("Payload (the record as the source produced it)");
  const payload = JSON.parse(await editor.inputValue());
  check(payload.SellPrice === "abc", `the payload holds the bad price: ${JSON.stringify(payload)}`);
  payload.SellPrice = "27.95";
  await editor.fill(JSON.stringify(payload, null, 2));
  await page.getByRole("button", { name: "Save payload" }).click();
  await page.getByText("Saved the payload of BAD-9001").waitFor();
  await page.getByRole("button", { name: "Replay" }).click();
  await page.getByText(/Replay of BAD-9001 queued/).waitFor();
  await waitForText(page, `${base}/failures`, "No open failures.");
  await waitForText(page, `${base}/find?q=BAD-9001`, "Runs that touched it");
  check((await page.content()).includes("created"), "the replayed record was created in the shop");
  console.log("ok: failure fixed and gone");

  // Find an order by its number: the search box, keyboard only.
  // The page before was a find page too: wait for the empty one, or the fill lands in the old page's box
  // and the navigation then empties it (seen on a loaded machine).
  await page.getByRole("link", { name: "Find a record" }).click();
  await page.waitForURL((url) => url.pathname.endsWith("/find") && !url.searchParams.get("q"));
  await page.getByLabel("Key or target id").fill("WEB-1001");
  await page.keyboard.press("Enter");
  await page.waitForURL((url) => url.searchParams.get("q") === "WEB-1001");
  await page.getByRole("heading", { name: "Synced" }).waitFor();
  const found = await page.locator("main").innerText();
  check(found.includes("orders") && found.includes("WEB-1001"), `WEB-1001 found in the orders flow: ${found}`);
  console.log("ok: order found");

  // Trigger a flow with the keyboard: Tab to "Run now", press Enter.
  await page.goto(`${base}/flows/products`);
  await page.getByRole("heading", { name: "Flow products" }).waitFor();
  let focused = "";
  for (let i = 0; i < 60 && focused !== "Run now"; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement?.textContent?.trim() ?? "");
  }
  check(focused === "Run now", "Tab reaches the Run now button");
  await page.keyboard.press("Enter");
  await page.getByText(/Queued an incremental sync of products as job \d+/).waitFor();
  console.log("ok: flow triggered by keyboard");

  // A read-only key sees the same pages, with every write button disabled.
  await signOut(page);
  await signIn(page, process.env.FERRY_READ_KEY);
  await page.goto(`${base}/flows/products`);
  check(await page.getByRole("button", { name: "Run now" }).isDisabled(), "Run now is disabled for a read key");
  check(await page.getByRole("button", { name: "Dry run" }).isDisabled(), "Dry run is disabled for a read key");
  await page.goto(`${base}/keys`);
  check(await page.getByRole("button", { name: "Create key" }).isDisabled(), "Create key is disabled for a read key");
  await page.goto(`${base}/connections`);
  check(await page.getByRole("button", { name: "Check" }).first().isDisabled(), "Check is disabled for a read key");
  // Even a form forced past the disabled button is refused by the server.
  await page.goto(`${base}/flows/products`);
  const status = await page.evaluate(async () => {
    const form = document.querySelector('form[action$="/trigger"]');
    const r = await fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)), redirect: "manual" });
    return r.status;
  });
  check(status === 403, `the server refuses a read key's trigger (got ${status})`);
  console.log("ok: read key refused");

  // A 390-px phone: nothing wider than the screen but the tables, which scroll in their own box.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const url of ["/", "/failures", "/find?q=WEB-1001", "/flows/products"]) {
    await page.goto(`${base}${url}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${url} is ${overflow} px wider than a 390-px screen`);
  }
  // The incremental run triggered above read the export again, whose row is still bad: parked again.
  await waitForText(page, `${base}/failures`, "BAD-9001");
  await page.locator('table.groups a[href*="/failures/group"]').first().click();
  await page.getByRole("link", { name: "BAD-9001" }).click();
  await page.getByRole("heading", { name: "Failed record BAD-9001" }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the failure page is ${overflow} px wider than a 390-px screen`);
  await page.screenshot({ path: path.join(shots, "failure-390.png"), fullPage: true });
  await page.goto(`${base}/`);
  await page.screenshot({ path: path.join(shots, "overview-390.png"), fullPage: true });
  console.log("ok: phone fits");
} catch (e) {
  await page.screenshot({ path: path.join(shots, "failed.png"), fullPage: true }).catch(() => {});
  console.error(`FAILED at ${page.url()}: ${e.stack ?? e}`);
  await context.close();
  process.exit(1);
}
await context.close();
