import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { sharedElasticsearch } from "../fixtures/elasticsearch.js";
import { HOSTILE, type Incident, runIncident, waitFor } from "./incident.js";

/**
 * `ikontainer ui` in a real browser (Debian's chromium, headless, driven by playwright-core) over the demo's
 * IP-reuse incident written by real agents: once over their local stores, once over the real Elasticsearch.
 * IKONTAINER_UI_SCREENSHOTS=1 writes the screenshots of the local-store run to docs/ui/.
 */

vi.setConfig({ testTimeout: 240_000, hookTimeout: 300_000 });

const REPO = new URL("../..", import.meta.url).pathname;
const MAIN = join(REPO, "dist/cli/main.js");
const CHROMIUM = "/usr/bin/chromium";
const PASSWORD = "never-in-the-page-3141";
const SHOTS = process.env.IKONTAINER_UI_SCREENSHOTS === "1" ? join(REPO, "docs/ui") : undefined;
const PAGE_SIZE = 8;

let dir: string;
let browser: Browser;
const uis: ChildProcess[] = [];

/** Starts `ikontainer ui` on a free loopback port; returns its base URL. */
async function startUi(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const child = spawn(
    process.execPath,
    [MAIN, "ui", "--listen", "127.0.0.1:0", "--page-size", String(PAGE_SIZE), ...args],
    {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  uis.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  await waitFor("the ui to listen", () => {
    if (child.exitCode !== null) throw new Error(`ikontainer ui exited ${child.exitCode}: ${err}`);
    return /http:\/\/\S+\//.test(out);
  });
  return /(http:\/\/\S+)\//.exec(out)![1]!;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} missing: run scripts/setup.sh (apt-get install chromium)`);
  dir = mkdtempSync(join(tmpdir(), "ikon-ui-"));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

afterAll(async () => {
  await browser?.close();
  for (const c of uis) if (c.exitCode === null) c.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

const cuidsOfRows = (page: Page) =>
  page.getByTestId("line").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-cuid")));

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** The incident through the page's controls; every source must give the same answers. */
async function investigate(base: string, inc: Incident, shots: boolean): Promise<string[]> {
  const pages: string[] = [];
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("response", async (r) => {
    if (r.url().startsWith(base)) pages.push(await r.text().catch(() => ""));
  });
  const [c1, c3, web] = [inc.cuids["cart-1"], inc.cuids["cart-3"], inc.cuids.web];

  // 1. search by IP alone: lines of both instances that held it, mixed
  await page.goto(`${base}/`);
  await page.getByTestId("q-ip").fill(inc.ip);
  await page.getByTestId("q-submit").click();
  await expect.poll(() => page.getByTestId("line").count()).toBe(PAGE_SIZE);
  // page through everything: no line twice, time order, both holders
  const seen: string[] = [];
  const times: string[] = [];
  for (let i = 0; i < 20; i++) {
    const rows = page.getByTestId("line");
    for (const r of await rows.all()) {
      seen.push((await r.getAttribute("data-cuid"))!);
      times.push(((await r.locator("td.t").textContent()) ?? "").trim());
    }
    const next = page.getByTestId("next-page");
    if ((await next.count()) === 0) break;
    await next.click();
  }
  expect(new Set(seen)).toEqual(new Set([c1, c3]));
  expect(seen.length).toBe(11 + 10); // cart-1 served 10 requests + 1 error line, cart-3 served 10
  expect([...times].sort()).toEqual(times);

  // 2. the IP's timeline: two holders, cart-1's end inferred (it was killed), then the time cursor
  await page.goto(`${base}/search?ip=${inc.ip}`);
  await page.getByTestId("ip-timeline-link").click();
  const holders = page.getByTestId("holder");
  expect(
    await holders.evaluateAll((gs) => gs.map((g) => [g.getAttribute("data-cuid"), g.getAttribute("class")])),
  ).toEqual([
    [c1, "holder inferred"],
    [c3, "holder stopped"],
  ]);
  await expect.poll(() => page.getByTestId("timeline").textContent()).toContain("inferred end");
  // drag the slider into the middle of cart-3's time: the page names cart-3 under the cursor
  const [s3, e3] = await holders
    .nth(1)
    .evaluate((g) => [Number(g.getAttribute("data-start")), Number(g.getAttribute("data-end"))]);
  const slider = page.getByTestId("at-slider");
  const [min, max] = await slider.evaluate((el) => [
    Number(el.getAttribute("min")),
    Number(el.getAttribute("max")),
  ]);
  const box = (await slider.boundingBox())!;
  const thumb = 16;
  const x = box.x + thumb / 2 + (((s3! + e3!) / 2 - min) / (max - min)) * (box.width - thumb);
  await page.mouse.click(x, box.y + box.height / 2);
  expect(await page.getByTestId("at-holder-live").textContent()).toBe(`under the cursor: ${c3}`);
  const picked = Date.parse(await page.getByTestId("at-text").inputValue());
  expect(picked).toBeGreaterThanOrEqual(s3!);
  expect(picked).toBeLessThan(e3!);
  // type the failing request's time: cart-1 held the IP then; ask the server
  await page.getByTestId("at-text").fill(new Date(inc.at).toISOString());
  await page.getByTestId("at-text").dispatchEvent("change");
  expect(await page.getByTestId("at-holder-live").textContent()).toBe(`under the cursor: ${c1}`);
  await page.getByTestId("at-submit").click();
  const answer = page.getByTestId("holder-at");
  await expect.poll(() => answer.textContent()).toContain(c1);
  expect(await answer.textContent()).not.toContain(c3);
  expect(await answer.textContent()).toContain("end inferred");
  expect(new Set(await cuidsOfRows(page))).toEqual(new Set([c1]));
  if (shots) await shot(page, "ip-timeline");

  // 3. the instance page of the holder at T
  await answer.getByRole("link", { name: c1 }).click();
  await expect.poll(() => page.getByTestId("inst-cuid").textContent()).toBe(c1);
  expect(await page.getByTestId("inst-pod").textContent()).toBe("cart-1");
  expect(await page.getByTestId("inst-ip").textContent()).toBe(inc.ip);
  expect(await page.getByTestId("inst-node").textContent()).toBe("node-a");
  expect(await page.getByTestId("inst-stopped").textContent()).toBe("no clean stop recorded");
  const kibana = new URL((await page.getByTestId("kibana-link").getAttribute("href"))!);
  expect(kibana.pathname).toBe("/app/discover");
  expect(decodeURIComponent(kibana.hash)).toContain(
    `query:(language:kuery,query:'ikontainer_CUID : "${c1}"')`,
  );
  expect(await page.locator("td.msg").allTextContents()).toContainEqual(
    expect.stringContaining(`ERROR payment backend timed out after 2000ms x-request-id=${inc.requestId}`),
  );
  if (shots) await shot(page, "instance");

  // 4. CUID + request ID: only that instance's lines of that request
  await page.goto(`${base}/`);
  await page.getByTestId("q-cuid").fill(c1);
  await page.getByTestId("q-rid").fill(inc.requestId);
  await page.getByTestId("q-submit").click();
  await expect.poll(() => page.getByTestId("count").textContent()).toContain("2 lines");
  expect(await cuidsOfRows(page)).toEqual([c1, c1]);
  expect((await page.locator("td.msg").allTextContents()).map((m) => m.replace(/^\S+ /, ""))).toEqual([
    `INFO GET /cart/42 x-request-id=${inc.requestId}`,
    `ERROR payment backend timed out after 2000ms x-request-id=${inc.requestId}`,
  ]);
  if (shots) await shot(page, "search");

  // 5. the request's path: web, then cart-1, in time order
  await page.getByTestId("request-link").click();
  await expect.poll(() => page.getByTestId("hop").count()).toBe(2);
  // hops in the order of their first line (the agents' read times: which comes first depends on the agents)
  const hops = await page
    .getByTestId("hop")
    .evaluateAll((hs) => hs.map((h) => [h.getAttribute("data-cuid"), h.getAttribute("data-first")]));
  expect(new Set(hops.map((h) => h[0]))).toEqual(new Set([web, c1]));
  expect(hops.map((h) => h[1])).toEqual(hops.map((h) => h[1]).sort());
  const webHop = page.locator(`[data-testid="hop"][data-cuid="${web}"]`);
  const cartHop = page.locator(`[data-testid="hop"][data-cuid="${c1}"]`);
  expect(await webHop.textContent()).toContain("GET /checkout upstream error");
  expect(await cartHop.textContent()).toContain(`IP ${inc.ip}`);
  expect(await cartHop.textContent()).toContain("ERROR payment backend timed out");
  if (shots) await shot(page, "request");

  // 6. a hostile line stays text: no element injected, control characters shown, the script never ran
  await page.goto(`${base}/search?rid=${inc.hostileId}`);
  await expect.poll(() => page.getByTestId("line").count()).toBe(1);
  expect(await page.locator("td.msg img").count()).toBe(0);
  const shown = (await page.locator("td.msg").textContent())!;
  expect(shown).toMatch(/^\S+ WARN /);
  expect(shown.replace(/^\S+ WARN /, "")).toBe(
    `${HOSTILE.replace(/\u001b/g, "\\x1b").replace(/\u202e/g, "\\u202e")} x-request-id=${inc.hostileId}`,
  );
  expect(await page.locator("td.msg .ctl").count()).toBe(3);
  expect(await page.title()).not.toBe("pwned");
  await page.close();
  return pages;
}

describe("ikontainer ui in a browser", () => {
  it("over the agents' local stores: the incident told apart through the page's controls", async () => {
    const inc = await runIncident(
      join(dir, "local"),
      `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}`,
    );
    const base = await startUi(inc.stateDirs.flatMap((d) => ["--state-dir", d]));
    await investigate(base, inc, true);
    // read-only: anything but GET/HEAD is refused; a foreign Host (DNS rebinding) too
    expect((await fetch(`${base}/search?ip=${inc.ip}`, { method: "POST" })).status).toBe(405);
    const foreign = await new Promise<number>((resolve, reject) =>
      request(`${base}/`, { headers: { host: "evil.example" } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
        .on("error", reject)
        .end(),
    );
    expect(foreign).toBe(421);
  });

  it("over the real Elasticsearch: the same answers; no credential reaches the browser", async () => {
    const url = await sharedElasticsearch();
    const prefix = `ikontainer-ui-${process.pid}-${Date.now()}`;
    const inc = await runIncident(
      join(dir, "es"),
      `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}`,
      {
        url,
        prefix,
      },
    );
    const base = await startUi(["--es", url, "--es-index-prefix", prefix, "--es-username", "reader"], {
      IKONTAINER_ES_PASSWORD: PASSWORD,
    });
    const pages = await investigate(base, inc, false);
    expect(pages.length).toBeGreaterThan(10);
    expect(pages.join("\n")).not.toContain(PASSWORD);
    expect(pages.join("\n")).toContain(`Elasticsearch ${url}`);
  });
});
