// Load the audit page in headless Chromium, collect console errors, count the
// image rows, sort by the cold-start column both ways, and save a screenshot.
// Usage: node check.mjs PAGE.html SCREENSHOT.png  → prints one JSON line.
import { chromium } from 'playwright-core';

const [, , file, shot] = process.argv;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
const requests = [];
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('pageerror', (e) => errors.push(String(e)));
page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) requests.push(r.url()); });
await page.goto('file://' + file, { waitUntil: 'load' });
const rows = await page.$$eval('#images tbody tr', (r) => r.length);
const column = async () => page.$$eval('#images tbody tr td:nth-child(5)', (tds) => tds.map((td) => Number(td.dataset.sort)));
const header = '#images thead th:nth-child(5)';
await page.click(header);
const ascending = await column();
const ariaAsc = await page.getAttribute(header, 'aria-sort');
await page.click(header);
const descending = await column();
const firstRepo = await page.$eval('#images tbody tr td:nth-child(1)', (td) => td.textContent);
const bars = await page.$$eval('svg rect.now', (r) => r.length);
await page.screenshot({ path: shot, fullPage: true });
await browser.close();
console.log(JSON.stringify({ rows, errors, requests, ascending, descending, ariaAsc, firstRepo, bars }));
