/**
 * The live page in a real headless Chromium, driven by puppeteer-core: it loads without a console
 * error, connects, echoes typed text, runs a ping (keyboard only) and draws the chart, shows a TCP
 * session made by another client in its feed, fits a 375 px wide screen and follows
 * `prefers-color-scheme`; and the same page served by `server.ts --ws`, the real CLI, with a TCP
 * session and a datagram from other clients in its feed. Saves screenshots under the OS temp dir,
 * and the CLI's to docs/ws_page.png with UPDATE_SCREENSHOT=1. Skipped, with a line saying why,
 * when no Chromium can be found.
 */
import assert from "node:assert/strict";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { echoTcp, serveTcpEcho } from "../tcp.ts";
import { echoUdp, serveUdpEcho } from "../udp.ts";
import { serveWsEcho } from "../ws.ts";
import { childEnded, readyOrKill, ROOT, spawnServer, tutorialTcpClient } from "./_helpers.ts";

const CANDIDATES = [
  Deno.env.get("CHROMIUM_PATH"),
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
];

function findChromium(): string | undefined {
  for (const path of CANDIDATES) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

const CHROMIUM = findChromium();
if (!CHROMIUM) {
  console.log(
    `ws_browser_test: skipped, no Chromium at ${
      CANDIDATES.filter(Boolean).join(", ")
    } (apt-get install chromium, or set CHROMIUM_PATH)`,
  );
}

/** Starts headless Chromium with a throw-away profile. */
async function launch(): Promise<{ browser: Browser; profile: string }> {
  const profile = await Deno.makeTempDir({ prefix: "echo-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    pipe: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
    ],
  });
  return { browser, profile };
}

/** Collects what the page must never show: console errors and warnings, failures, HTTP errors. */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warn") problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e}`));
  page.on("requestfailed", (r) => problems.push(`requestfailed: ${r.url()}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  return problems;
}

/** Loads the page and waits until its echo and its live view are connected. */
async function openPage(page: Page, url: string): Promise<void> {
  await page.setViewport({ width: 1200, height: 900 });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector('#status[data-state="open"]', { timeout: 10_000 });
  await page.waitForFunction(
    'document.getElementById("feed-note").textContent.startsWith("Live")',
    { timeout: 10_000 },
  );
}

/** Types a message into the focused echo field, presses Enter and waits for the timed echo. */
async function typeAndEcho(page: Page, text: string): Promise<void> {
  assert.equal(await page.evaluate("document.activeElement.id"), "message");
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    `[...document.querySelectorAll("#log li")].some((li) => li.textContent.includes(${
      JSON.stringify(text)
    }) && /\\d+\\.\\d\\d ms/.test(li.textContent))`,
    { timeout: 10_000 },
  );
}

/**
 * Runs a ping from the page, keyboard only (Tab to the fields and the button), and checks that the
 * chart has every point and is drawn, and the summary has its percentiles.
 */
async function pingByKeyboard(page: Page, count: number, interval: number): Promise<void> {
  await page.focus("#count");
  await page.keyboard.down("Control");
  await page.keyboard.press("a");
  await page.keyboard.up("Control");
  await page.keyboard.type(String(count));
  await page.keyboard.press("Tab");
  await page.keyboard.down("Control");
  await page.keyboard.press("a");
  await page.keyboard.up("Control");
  await page.keyboard.type(String(interval));
  await page.keyboard.press("Tab"); // size
  await page.keyboard.press("Tab"); // Start ping
  assert.equal(await page.evaluate("document.activeElement.id"), "ping");
  await page.keyboard.press("Enter");
  await page.waitForFunction(`document.getElementById("chart").dataset.points === "${count}"`, {
    timeout: 20_000,
  });
  // Pixels actually drawn on the chart (alpha above 0), not just a data attribute.
  const inked = await page.evaluate(`(() => {
      const canvas = document.getElementById("chart");
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
      return n;
    })()`) as number;
  assert.ok(inked > 500, `chart has ${inked} drawn pixels`);
  const summary = await page.evaluate('document.getElementById("ping-summary").textContent');
  assert.match(String(summary), new RegExp(`received ${count}`));
  assert.match(String(summary), /p99 \d+\.\d\d/);
}

/** Waits until a line of the live feed matches. */
async function feedShows(page: Page, pattern: RegExp): Promise<void> {
  await page.waitForFunction(
    `[...document.querySelectorAll("#feed li")].some((li) => ${pattern}.test(li.textContent))`,
    { timeout: 10_000 },
  );
}

/** Saves a full-page screenshot under a temp dir, and to docs/ with UPDATE_SCREENSHOT=1. */
async function screenshot(page: Page, name: string, docs: boolean): Promise<string> {
  const shots = await Deno.makeTempDir({ prefix: "echo-ws-page-" });
  const shot = `${shots}/${name}.png`;
  await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
  console.log(`  screenshot: ${shot}`);
  if (docs && Deno.env.get("UPDATE_SCREENSHOT") === "1") {
    await Deno.mkdir(`${ROOT}docs`, { recursive: true });
    await Deno.copyFile(shot, `${ROOT}docs/ws_page.png`);
    console.log(`  screenshot copied to docs/ws_page.png`);
  }
  return shots;
}

Deno.test({
  name:
    "ws page: loads clean in Chromium, echoes typed text, pings with a chart, shows TCP/UDP events",
  ignore: !CHROMIUM,
  // puppeteer's pipes and node:child_process handles outlive the test by a tick; everything this
  // test starts is closed in its finally blocks.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = serveWsEcho({ port: 0 });
    // Shared counters and the feed's hooks: what serveEcho will do for every transport.
    await using tcp = serveTcpEcho({ port: 0, stats: server.stats, ...server.feed!.hooks("tcp") });
    await using udp = await serveUdpEcho({
      port: 0,
      stats: server.stats,
      ...server.feed!.hooks("udp"),
    });
    const { browser, profile } = await launch();
    try {
      const page = await browser.newPage();
      const problems = watchProblems(page);
      await openPage(page, `http://127.0.0.1:${server.addr.port}/`);

      // Echo: type and press Enter.
      await typeAndEcho(page, "hello from Chromium");

      // Ping, keyboard only: Tab to the fields and the button.
      await pingByKeyboard(page, 60, 5);

      // Another client's TCP session shows up in the feed, and the counters follow.
      await echoTcp("a TCP client elsewhere", { port: tcp.addr.port });
      await echoUdp("a UDP datagram", { port: udp.addr.port });
      await feedShows(page, /tcp close #1 127\.0\.0\.1:\d+ 22 B/);
      await feedShows(page, /udp datagram 127\.0\.0\.1:\d+ 14 B “a UDP datagram”/);
      // "sessions total" counts the TCP session and the page's own WebSocket.
      await page.waitForFunction(
        'Number(document.querySelectorAll("#counters dd")[1].textContent) >= 2',
        { timeout: 10_000 },
      );

      // docs/ws_page.png comes from the real CLI (the next test).
      const shots = await screenshot(page, "ws_page", false);

      // Phone-sized: nothing wider than the screen.
      await page.setViewport({ width: 375, height: 800 });
      const width = await page.evaluate("document.documentElement.scrollWidth") as number;
      assert.ok(width <= 375, `page is ${width}px wide at 375px`);
      await page.screenshot({ path: `${shots}/ws_page_375.png`, fullPage: true });
      console.log(`  phone-sized screenshot: ${shots}/ws_page_375.png`);

      // Dark mode.
      const background = "getComputedStyle(document.body).backgroundColor";
      const light = await page.evaluate(background);
      await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
      const dark = await page.evaluate(background);
      assert.notEqual(light, dark);

      assert.deepEqual(problems, []);
      await page.close();
    } finally {
      await browser.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "ws page served by server.ts --ws (the real CLI): echoes, pings, and shows a TCP session and a datagram from other clients",
  ignore: !CHROMIUM,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = spawnServer(["--port", "0", "--ws", "0"]);
    const ports = await readyOrKill(
      server,
      (async () => {
        const tcp = await server.stdout.waitFor(/^listening tcp 127\.0\.0\.1:(\d+)$/);
        const ws = await server.stdout.waitFor(
          /^listening ws 127\.0\.0\.1:(\d+) \(page: (http:\/\/127\.0\.0\.1:\d+\/)\)$/,
        );
        return { tcp: Number(tcp[1]), page: ws[2] };
      })(),
    );
    const { browser, profile } = await launch();
    try {
      const page = await browser.newPage();
      const problems = watchProblems(page);
      await openPage(page, ports.page);
      await typeAndEcho(page, "hello from Chromium");
      await pingByKeyboard(page, 40, 5);

      // The tutorial's TCP client, and a UDP datagram, from outside the page.
      const reply = await tutorialTcpClient(ports.tcp, "a TCP client elsewhere");
      assert.equal(reply, "a TCP client elsewhere");
      await echoUdp("a UDP datagram", { port: ports.tcp });
      await feedShows(page, /tcp close #1 127\.0\.0\.1:\d+ 22 B/);
      await feedShows(page, /udp datagram 127\.0\.0\.1:\d+ 14 B “a UDP datagram”/);
      await page.waitForFunction(
        'Number(document.querySelectorAll("#counters dd")[1].textContent) >= 2',
        { timeout: 10_000 },
      );
      await screenshot(page, "ws_page_cli", true);
      assert.deepEqual(problems, []);
      await page.close();
    } finally {
      await browser.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      server.child.kill("SIGINT");
      const { code, lines } = await childEnded(server);
      assert.equal(code, 0);
      assert.ok(
        lines.some((line) => /^ws connection #1 from 127\.0\.0\.1:\d+ \(path \/\)$/.test(line)),
      );
    }
  },
});
