// Headless Chromium test of the qc task board (/board/), run by BoardPageTest with:
//   node board.test.mjs <baseUrl> <operatorKey> <doctor> <sourceKey> <documentCompletedEventJson> <documentType>
// Opens the board for the doctor, sees the open task with time left and the statistics chart, posts the
// document-completed event, and sees the task struck through without a reload. Exit code 0 and "BOARD OK" on success.
import { chromium } from 'playwright-core';

const [base, key, doctor, sourceKey, docEvent, documentType] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
});
let failed = false;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log('[page]', m.type(), m.text()));
  await page.goto(`${base}/board/?doctor=${encodeURIComponent(doctor)}&key=${encodeURIComponent(key)}`);
  await page.waitForSelector('#conn.on', { timeout: 15000 });
  const row = page.locator('#tasks tbody tr', { hasText: documentType });
  await row.first().waitFor({ timeout: 15000 });
  if (await row.count() !== 1) throw new Error(`expected one ${documentType} row, got ${await row.count()}`);
  const left = await row.locator('.left').textContent();
  if (!/\d+h \d+m \d+s left$/.test(left)) throw new Error(`time left not shown: '${left}'`);
  if (await row.getAttribute('class') !== 'OPEN') throw new Error(`open task has class '${await row.getAttribute('class')}'`);
  const deco = await row.locator('td').first().evaluate((td) => getComputedStyle(td).textDecorationLine);
  if (deco.includes('line-through')) throw new Error('open task is struck through');
  // counts down
  await page.waitForFunction((before) => {
    const rows = [...document.querySelectorAll('#tasks tbody tr')];
    return rows.some((r) => r.querySelector('.left').textContent !== before && r.querySelector('.left').textContent.endsWith('left'));
  }, left, { timeout: 5000 });
  // the chart: an SVG with bars
  await page.waitForSelector('#chart svg rect.bar', { timeout: 15000 });
  const bars = await page.locator('#chart svg rect.bar').count();
  console.log(`chart bars: ${bars}`);

  await page.evaluate(() => { window.notReloaded = true; });
  const r = await fetch(`${base}/api/v1/events`, { method: 'POST', headers: { 'X-Api-Key': sourceKey, 'Content-Type': 'application/json' },
    body: `[${docEvent}]` });
  if (r.status !== 202) throw new Error(`posting the document event: HTTP ${r.status} ${await r.text()}`);
  await page.waitForFunction((doc) => {
    const tr = [...document.querySelectorAll('#tasks tbody tr')].find((x) => x.textContent.includes(doc));
    return tr && tr.classList.contains('closed')
      && getComputedStyle(tr.querySelector('td')).textDecorationLine.includes('line-through')
      && tr.querySelector('.status').textContent === 'COMPLETED_ON_TIME';
  }, documentType, { timeout: 15000 });
  if (!(await page.evaluate(() => window.notReloaded === true))) throw new Error('the page was reloaded');
  const link = await row.locator('a').getAttribute('href');
  if (!/^\/api\/v1\/qc\/tasks\/\d+$/.test(link)) throw new Error(`task link '${link}'`);
  console.log('BOARD OK');
} catch (e) {
  failed = true;
  console.log('BOARD FAILED: ' + (e && e.stack || e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
