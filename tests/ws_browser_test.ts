/**
 * The live page in a real headless Chromium, driven by puppeteer-core: it loads without a console
 * error, connects, echoes typed text, runs a ping (keyboard only) and draws the chart, shows a TCP
 * session made by another client in its feed, fits a 375 px wide screen and follows
 * `prefers-color-scheme`. Saves a screenshot under the OS temp dir, and to docs/ws_page.png with
 * UPDATE_SCREENSHOT=1. Skipped, with a line saying why, when no Chromium can be found.
 */
import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { echoTcp, serveTcpEcho } from "../tcp.ts";
import { echoUdp, serveUdpEcho } from "../udp.ts";
import { serveWsEcho } from "../ws.ts";
import { ROOT } from "./_helpers.ts";

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
    const problems: string[] = [];
    try {
      const page = await browser.newPage();
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warn") problems.push(`${m.type()}: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`pageerror: ${e}`));
      page.on("requestfailed", (r) => problems.push(`requestfailed: ${r.url()}`));
      page.on("response", (r) => {
        if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
      });
      await page.setViewport({ width: 1200, height: 900 });
      const url = `http://127.0.0.1:${server.addr.port}/`;
      await page.goto(url, { waitUntil: "load" });
      await page.waitForSelector('#status[data-state="open"]', { timeout: 10_000 });
      await page.waitForFunction(
        'document.getElementById("feed-note").textContent.startsWith("Live")',
        { timeout: 10_000 },
      );

      // Echo: type and press Enter.
      assert.equal(await page.evaluate("document.activeElement.id"), "message");
      await page.keyboard.type("hello from Chromium");
      await page.keyboard.press("Enter");
      await page.waitForFunction(
        String.raw`[...document.querySelectorAll("#log li")]
          .some((li) => /hello from Chromium .*\d+\.\d\d ms/.test(li.textContent))`,
        { timeout: 10_000 },
      );

      // Ping, keyboard only: Tab to the fields and the button.
      await page.focus("#count");
      await page.keyboard.down("Control");
      await page.keyboard.press("a");
      await page.keyboard.up("Control");
      await page.keyboard.type("60");
      await page.keyboard.press("Tab");
      await page.keyboard.down("Control");
      await page.keyboard.press("a");
      await page.keyboard.up("Control");
      await page.keyboard.type("5");
      await page.keyboard.press("Tab"); // size
      await page.keyboard.press("Tab"); // Start ping
      assert.equal(await page.evaluate("document.activeElement.id"), "ping");
      await page.keyboard.press("Enter");
      await page.waitForFunction('document.getElementById("chart").dataset.points === "60"', {
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
      assert.match(String(summary), /received 60/);
      assert.match(String(summary), /p99 \d+\.\d\d/);

      // Another client's TCP session shows up in the feed, and the counters follow.
      await echoTcp("a TCP client elsewhere", { port: tcp.addr.port });
      await echoUdp("a UDP datagram", { port: udp.addr.port });
      await page.waitForFunction(
        String.raw`[...document.querySelectorAll("#feed li")]
          .some((li) => /tcp close #1 127\.0\.0\.1:\d+ 22 B/.test(li.textContent))`,
        { timeout: 10_000 },
      );
      await page.waitForFunction(
        String.raw`[...document.querySelectorAll("#feed li")]
          .some((li) => /udp datagram 127\.0\.0\.1:\d+ 14 B “a UDP datagram”/.test(li.textContent))`,
        { timeout: 10_000 },
      );
      // "sessions total" counts the TCP session and the page's own WebSocket.
      await page.waitForFunction(
        'Number(document.querySelectorAll("#counters dd")[1].textContent) >= 2',
        { timeout: 10_000 },
      );

      const shots = await Deno.makeTempDir({ prefix: "echo-ws-page-" });
      const shot = `${shots}/ws_page.png`;
      await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
      console.log(`  screenshot: ${shot}`);
      if (Deno.env.get("UPDATE_SCREENSHOT") === "1") {
        await Deno.mkdir(`${ROOT}docs`, { recursive: true });
        await Deno.copyFile(shot, `${ROOT}docs/ws_page.png`);
        console.log(`  screenshot copied to docs/ws_page.png`);
      }

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
