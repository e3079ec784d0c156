// The dashboard in a real browser (issue #17): Debian's chromium driven by playwright-core,
// against a running gateway over a seeded store. Logs in, checks that every chart drew
// (pixels, not only DOM), sees a new connection arrive in the live feed, searches, opens a
// flow, exports, and is refused with a wrong token. Screenshots go to
// test-artifacts/dashboard/ (gitignored) for a person to look at.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { type DashboardGateway, startDashboardGateway, TOKEN } from '../helpers/dashboard.js';
import { ROOT } from '../helpers/honeygate.js';

const CHROMIUM = process.env.HONEYGATE_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'dashboard');
const CHARTS = ['timeline', 'ports', 'heatmap', 'protocols', 'refusals'];

const skip = existsSync(CHROMIUM)
  ? false
  : `no chromium at ${CHROMIUM} (apt-get install chromium; npm test does as root)`;

describe('dashboard in chromium', { skip, timeout: 120_000 }, () => {
  let g: DashboardGateway;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = []; // console errors (a CSP violation is one) and page errors

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    g = await startDashboardGateway();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  });
  after(async () => {
    await browser?.close();
    await g?.close();
  });

  /** Non-transparent pixels in the chart's canvas (each canvas starts cleared). */
  const inked = (chart: string) =>
    page.evaluate((name) => {
      const host = document.querySelector(`[data-chart="${name}"]`);
      const canvas = (
        host instanceof HTMLCanvasElement ? host : host?.querySelector('canvas')
      ) as HTMLCanvasElement | null;
      if (!canvas || canvas.width === 0) return 0;
      const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
      return n;
    }, chart);

  test('a wrong token is refused', async () => {
    const res = await page.goto(`${g.base}/`);
    assert.equal(new URL(page.url()).pathname, '/login', 'the page sends us to the login');
    assert.equal(res?.status(), 200);
    await page.fill('#token', 'not-the-token');
    const [answer] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.equal(answer?.status(), 401);
    assert.equal(await page.textContent('.login-error'), 'Wrong token.');
    assert.deepEqual(await context.cookies(), []);
    await page.screenshot({ path: path.join(ARTIFACTS, 'login-refused.png') });
    // The browser logs the 401 itself as a console error: expected here, nowhere else.
    problems.splice(0, problems.length, ...problems.filter((p) => !/status of 401/.test(p)));
  });

  test('log in, and every chart renders from the seeded store', async () => {
    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForURL(`${g.base}/`), page.click('button[type=submit]')]);
    const [cookie] = await context.cookies();
    assert.equal(cookie?.name, 'hg_session');
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');

    await page.click('nav.ranges button:text-is("1h")');
    await page.waitForFunction(
      (flows) => document.querySelector('#tile-flows .n')?.textContent === flows.toLocaleString(),
      g.seed.flows,
    );
    for (const chart of CHARTS) {
      await page.waitForFunction((name) => {
        const host = document.querySelector(`[data-chart="${name}"]`);
        return (host instanceof HTMLCanvasElement ? host : host?.querySelector('canvas'))?.width;
      }, chart);
      // Enough drawn pixels to be bars, lines and cells, not an empty axis.
      const n = await inked(chart);
      assert.ok(n > 800, `${chart}: only ${n} pixels drawn`);
    }
    // The busiest source and port are named where an analyst looks first.
    const busiest = [...g.seed.bySource].sort((a, b) => b[1] - a[1])[0]![0];
    assert.equal(await page.textContent('#sources tbody tr:first-child td:first-child'), busiest);
    // Times in the viewer's zone, UTC on hover.
    assert.match(
      (await page.getAttribute('#sources time', 'title'))!,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$/,
    );
    assert.match((await page.textContent('#backends'))!, /cowrie/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'overview.png') }); // docs/dashboard.png is one
  });

  test('a new connection to a listener shows in the live feed within 2 s', async () => {
    await page.waitForSelector('#live .live-state.live');
    const s = net.connect(g.listenerPort, '127.0.0.1');
    s.on('error', () => {});
    const port = await new Promise<number>((resolve) => s.once('connect', () => resolve(s.localPort!)));
    const t0 = Date.now();
    s.end('GET /live-feed HTTP/1.0\r\n\r\n');
    await page.waitForSelector(`#live tbody tr:has-text("127.0.0.1:${port}")`, { timeout: 5000 });
    const took = Date.now() - t0;
    assert.ok(took < 2000, `the flow showed after ${took} ms`);
  });

  test('search, filter, open a flow and export it', async () => {
    await page.fill('#search input[name=src]', '203.0.113.99');
    await page.fill('#search input[name=since]', '2h');
    await page.click('#search button[type=submit]');
    await page.waitForFunction(() =>
      document.querySelector('#search .result-count')?.textContent?.startsWith('1 events'),
    );
    await page.click('#search tbody tr:first-child button.link');
    await page.waitForSelector('#detail #first-hex');
    assert.equal(await page.textContent('#first-text'), '=cmd|" /c calc"!A0\\r\\n');
    assert.match((await page.textContent('#first-hex'))!, /^000000 {2}3d 63 6d 64 7c 22 20 2f/);
    assert.match((await page.textContent('#detail dl'))!, /capture-done/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'flow-detail.png') });
    await page.keyboard.press('Escape');
    await page.waitForSelector('#detail', { state: 'detached' });

    const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    const text = readFileSync((await csv.path())!, 'utf8')
      .trim()
      .split('\r\n');
    assert.equal(text.length, 2);
    assert.match(text[1]!, /^[0-9a-f]{32},flow,.*,203\.0\.113\.99,5555,/);
    assert.match(csv.suggestedFilename(), /^honeygate-events-.*\.csv$/);
    const [jsonl] = await Promise.all([page.waitForEvent('download'), page.click('#export-jsonl')]);
    const lines = readFileSync((await jsonl.path())!, 'utf8')
      .trim()
      .split('\n');
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]!).id, g.seed.formulaId);
  });

  test('usable at a phone width and in dark mode', async () => {
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      colorScheme: 'dark',
      deviceScaleFactor: 2,
      storageState: await context.storageState(),
    });
    try {
      const p = await phone.newPage();
      p.on('pageerror', (e) => problems.push(`page error (phone): ${e.message}`));
      await p.goto(`${g.base}/`);
      await p.waitForFunction(
        () => (document.querySelector('[data-chart="ports"]') as HTMLCanvasElement | null)?.width,
      );
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `the page is ${overflow} px wider than the phone`);
      const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(bg, 'rgb(15, 19, 24)', 'dark background');
      await p.screenshot({ path: path.join(ARTIFACTS, 'phone-dark.png'), fullPage: true });
    } finally {
      await phone.close();
    }
    assert.deepEqual(problems, [], 'no console errors, CSP violations or page errors');
  });
});
