// The demo page in headless Chromium, served by a live instance in Redis mode: start a
// session, run a tool, receive an agent.switch published through the server API, lose the
// instance while events are published elsewhere, and see them recovered in order.
// A screenshot is left in test-output/e2e/.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import {
  API_KEY, fakeUpstream, publish, startInstance, startRedis, until,
} from '../../clients/js/test/support.js';

const out = resolve(dirname(fileURLToPath(import.meta.url)), '../../test-output/e2e');
mkdirSync(out, { recursive: true });

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
  // A fake microphone, granted without a prompt, for the voice button.
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'];

const redis = await startRedis();
// One deployment, one record: both instances share a SQLite file.
const recordDir = mkdtempSync(join(tmpdir(), 'sb-e2e-record-'));
const shared = { SWITCHBOARD_RECORD_SQLITE: join(recordDir, 'record.db') };
let a = await startInstance({ redisUrl: redis.url, env: shared });
const b = await startInstance({ redisUrl: redis.url, env: shared });
// An instance online against a fake OpenAI on loopback (its sidebands attach to a port where
// nothing listens and retry; nothing leaves the machine).
const upstream = await fakeUpstream();
const online = await startInstance({
  env: {
    OPENAI_API_KEY: 'sk-test-e2e', OPENAI_BASE_URL: upstream.url,
    SWITCHBOARD_REALTIME_WS_URL: 'ws://127.0.0.1:9/v1/realtime',
    OPENAI_LIVE_WS_URL: 'ws://127.0.0.1:9/v1/live/sessions',
  },
});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: FLAGS,
});
after(async () => {
  await browser.close();
  await online.stop();
  await upstream.close();
  await a.stop();
  await b.stop();
  await redis.stop();
  rmSync(recordDir, { recursive: true, force: true });
});

/** The seqs shown in the event list, oldest first. */
const shownSeqs = (page) => page.$$eval('#events li[data-seq]',
  (lis) => lis.map((li) => Number(li.dataset.seq)).reverse());

test('the demo page runs a session end to end and recovers after losing its instance', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(m.text())) problems.push(m.text()); });

  await page.goto(`${a.base}/?scenario=customerServiceRetail`);
  await page.waitForSelector('#scenario option[value=customerServiceRetail]', { state: 'attached' });
  assert.equal(await page.$eval('#root', (s) => s.value), 'authentication');
  await page.click('#start');
  await page.waitForSelector('#status[data-status=open]');
  assert.deepEqual(await page.$$eval('#agents > li', (lis) => lis.map((l) => l.dataset.agent)),
    ['authentication', 'returns', 'salesAgent', 'simulatedHuman']);
  assert.equal(await page.$eval('#voice-note', (p) => p.dataset.voice), 'unavailable');
  const sessionId = await page.evaluate(() => window.switchboardDemo.client.sessionId);

  // A tool of the root agent, with the example arguments the page filled in.
  await page.selectOption('#tool', 'authenticate_user_information');
  await page.click('#run-tool');
  await page.waitForSelector('#events li[data-type="tool.result"]');
  assert.match(await page.textContent('#result'), /"success": true/);

  // An agent.switch published through the server API, on the other instance.
  await publish(b.base, sessionId, 'agent.switch', { from: 'authentication', to: 'returns', reason: 'e2e' });
  await page.waitForSelector('#events li[data-type="agent.switch"]');
  await page.waitForSelector('#agents > li.active[data-agent=returns]');

  // A moderation check from the page.
  await page.fill('#moderate-text', 'Where is my order?');
  await page.click('#moderate');
  await page.waitForFunction(() => document.querySelector('#result').textContent.includes('"allowed"'));

  // The drop button: the client reconnects and resumes.
  await page.click('#drop');
  await page.waitForFunction(() => document.querySelectorAll('#events li[data-kind=welcome]').length >= 2);
  await page.waitForSelector('#status[data-status=open]');

  // Lose the instance: events published meanwhile come back, in order, once.
  await a.stop('SIGKILL');
  await page.waitForSelector('#status[data-status=reconnecting]');
  for (let n = 1; n <= 4; n += 1) await publish(b.base, sessionId, 'x.demo.missed', { n });
  a = await startInstance({ port: a.port, redisUrl: redis.url, env: shared });
  await page.waitForFunction(
    () => document.querySelectorAll('#events li[data-type="x.demo.missed"]').length === 4,
    null, { timeout: 20_000 },
  );
  await page.waitForSelector('#status[data-status=open]');
  await publish(b.base, sessionId, 'x.demo.live', { after: 'recovery' });
  await page.waitForSelector('#events li[data-type="x.demo.live"]');

  const seqs = await shownSeqs(page);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1),
    'every event once, in order, no gaps');
  assert.equal(seqs.length, 7, 'tool.result, agent.switch, 4 missed, 1 live');
  const lastWelcome = await page.$eval('#events li[data-kind=welcome]', (li) => ({ ...li.dataset }));
  assert.equal(lastWelcome.recovered, 'true');
  assert.equal(lastWelcome.replayed, '4');

  await page.screenshot({ path: resolve(out, 'demo.png'), fullPage: true });
  assert.deepEqual(problems, []);
});

test('without an upstream key the page explains that only voice is unavailable', async () => {
  const page = await browser.newPage();
  await page.goto(`${b.base}/?scenario=simpleHandoff`);
  await page.waitForSelector('#scenario option[value=simpleHandoff]', { state: 'attached' });
  await page.click('#start');
  await page.waitForSelector('#status[data-status=open]');
  const note = await page.textContent('#voice-note');
  assert.match(note, /OPENAI_API_KEY/);
  assert.match(note, /Only the voice call needs/);
  assert.equal(await page.isVisible('#voice-start'), false);
  // simpleHandoff's agents have no tools of their own: the tool button is disabled.
  assert.equal(await page.isDisabled('#run-tool'), true);
  const csp = (await page.request.get(`${b.base}/`)).headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
});

test('over SSE, the page orchestrates and shows the switch it caused', async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${b.base}/?scenario=retail`);
  await page.waitForSelector('#scenario option[value=customerServiceRetail]', { state: 'attached' });
  assert.equal(await page.$eval('#scenario', (s) => s.value), 'customerServiceRetail', 'the alias');
  await page.selectOption('#transport', 'sse');
  await page.click('#start');
  await page.waitForSelector('#status[data-status=open]');
  assert.equal(await page.evaluate(() => window.switchboardDemo.client.conn.kind), 'sse');

  await page.fill('#orchestrate-text', 'I want to return my snowboard, it arrived broken');
  await page.click('#orchestrate');
  await page.waitForSelector('#events li[data-type="agent.switch"]');
  await page.waitForSelector('#agents > li.active[data-agent=returns]');
  // The switch can arrive over SSE before the orchestrate answer is shown: wait for both.
  await page.waitForFunction(() =>
    /"chosen_root": "returns"/.test(document.querySelector('#result').textContent));
  assert.match(await page.textContent('#result'), /"chosen_root": "returns"/);

  // The returns agent's tool now runs; its result arrives over SSE too.
  await page.selectOption('#tool', 'lookupOrders');
  await page.click('#run-tool');
  await page.waitForSelector('#events li[data-type="tool.result"]');
  assert.deepEqual(await shownSeqs(page), [1, 2]);
  assert.deepEqual(problems, []);
});

test('on a GPT-Live scenario the voice button sets the call up through /api/calls', async () => {
  const page = await browser.newPage();
  await page.goto(`${online.base}/?scenario=customerServiceRetailLive`);
  await page.waitForSelector('#scenario option[value=customerServiceRetailLive]', { state: 'attached' });
  await page.click('#start');
  await page.waitForSelector('#status[data-status=open]');
  assert.equal(await page.$eval('#voice-note', (p) => p.dataset.voice), 'available');
  assert.match(await page.textContent('#voice-note'), /GPT-Live/);
  await page.click('#voice-start');
  // The browser's own offer reaches Live as JSON; the call starts on the session's channel.
  const create = await until(() => upstream.requests.find((r) => r.url === '/v1/live/sessions'),
    10_000, 'the Live create');
  const body = JSON.parse(create.body);
  assert.deepEqual(Object.keys(body).sort(), ['session', 'transport']);
  assert.equal(body.transport.type, 'webrtc');
  assert.match(body.transport.sdp, /^v=0/);
  assert.equal(body.session.delegation.type, 'client');
  await page.waitForSelector('#events li[data-type="call.started"]');
  assert.equal(upstream.requests.filter((r) => r.url === '/v1/realtime/client_secrets').length, 0,
    'no browser key was minted for Live');
});

test('the page shows the record of the session as it grows and lists past sessions', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${b.base}/?scenario=retail&root=salesAgent`);
  await page.waitForSelector('#scenario option[value=customerServiceRetail]', { state: 'attached' });
  await page.click('#start');
  await page.waitForSelector('#status[data-status=open]');
  assert.equal(await page.isVisible('#record-card'), true);
  const sessionId = await page.evaluate(() => window.switchboardDemo.client.sessionId);

  // A tool call and an orchestration: both show in the record with their details.
  await page.selectOption('#tool', 'lookupNewSales');
  await page.click('#run-tool');
  await page.waitForSelector('#timeline li[data-kind="tool.call"]');
  const tool = await page.textContent('#timeline li[data-kind="tool.call"]');
  assert.match(tool, /lookupNewSales\(\{"category":"snowboard"\}\)/, 'arguments');
  assert.match(tool, /sales/, 'the result');
  assert.match(tool, /rest\)/, 'who ran it');
  await page.fill('#orchestrate-text', 'I want to return my snowboard, it arrived broken');
  await page.click('#orchestrate');
  await page.waitForSelector('#timeline li[data-kind="agent.switch"]');
  await page.waitForSelector('#timeline li[data-kind="orchestration"]');
  const kinds = await page.$$eval('#timeline li', (lis) => lis.map((li) => li.dataset.kind));
  assert.deepEqual(kinds, ['tool.call', 'agent.switch', 'orchestration'], 'oldest first');
  assert.equal(await page.$eval('#timeline-cost', (e) => e.dataset.cost), '0.00');

  // Past sessions, with the server key; this one is among them.
  await page.fill('#past-key', API_KEY);
  await page.click('#past-load');
  await page.waitForSelector(`#past-rows tr[data-session="${sessionId}"]`, { timeout: 10_000 });
  const row = await page.$$eval(`#past-rows tr[data-session="${sessionId}"] td`, (tds) => tds.map((t) => t.textContent));
  assert.equal(row[1], 'customerServiceRetail');
  assert.equal(row[4], '1', 'one tool call');
  await page.fill('#past-key', 'wrong-key');
  await page.click('#past-load');
  await page.waitForSelector('#past-error:not([hidden])');
  await page.screenshot({ path: resolve(out, 'record.png'), fullPage: true });
  assert.deepEqual(problems, []);
});

test('an interrupted answer shows what the caller heard, marked, and the cost adds up', async () => {
  // The record of a voice call (its items come from the sideband, which this page test has
  // no upstream for) as the timeline endpoint answers it: the browser's request is answered
  // from this fixture, and the page draws it as it would draw the server's.
  const heard = 'We have two boots on sale this week: the Alpine';
  const generated = `${heard} Pro at thirty percent off and the Trail Runner at twenty percent off.`;
  const items = [
    { seq: 1, kind: 'call.started', agent: 'salesAgent', call_id: 'rtc_1', data: { api: 'realtime' } },
    { seq: 2, kind: 'turn.user', agent: 'salesAgent', call_id: 'rtc_1', data: { text: 'Do you have boots on sale?' } },
    { seq: 3, kind: 'turn.assistant', agent: 'salesAgent', call_id: 'rtc_1',
      data: { text: heard, generated_text: generated, interrupted: true, audio_end_ms: 2000, heard: 'estimate' } },
    { seq: 4, kind: 'usage', agent: 'salesAgent', call_id: 'rtc_1', cost_usd: '0.04924', data: { model: 'gpt-realtime' } },
    { seq: 5, kind: 'turn.assistant', agent: 'salesAgent', call_id: 'rtc_1',
      data: { text: 'Anything else?', generated_text: 'Anything else?', interrupted: false } },
  ].map((i) => ({ at: '2026-12-04T10:00:00Z', cost_usd: null, ...i }));
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  let asked = 0;
  await page.route(/\/api\/sessions\/[^/]+\/timeline/, (route) => {
    asked += 1;
    return route.fulfill({ status: 200, contentType: 'application/json',
      body: JSON.stringify({ items, next_cursor: null, cost_usd: '0.04924' }) });
  });
  await page.goto(`${b.base}/?scenario=retail&root=salesAgent`);
  await page.waitForSelector('#scenario option[value=customerServiceRetail]', { state: 'attached' });
  await page.click('#start');
  await page.waitForSelector('#timeline li[data-kind="turn.assistant"]');
  assert.ok(asked >= 1, 'the page read the timeline endpoint');
  const answers = page.locator('#timeline li[data-kind="turn.assistant"]');
  assert.equal(await answers.count(), 2);
  const cut = answers.nth(0);
  assert.equal(await cut.getAttribute('data-interrupted'), 'true');
  const shown = await cut.textContent();
  assert.ok(shown.includes(heard) && shown.includes('[interrupted]'), shown);
  assert.ok(!shown.includes('Trail Runner'), `the unheard part is not shown as said: ${shown}`);
  assert.equal(await cut.getAttribute('title'), `generated: ${generated}`);
  assert.equal(await cut.evaluate((li) => getComputedStyle(li, '::after').content), '" ✂"');
  const whole = answers.nth(1);
  assert.equal(await whole.getAttribute('data-interrupted'), null);
  assert.ok(!(await whole.textContent()).includes('[interrupted]'));
  assert.match(await page.textContent('#timeline li[data-kind="usage"]'), /\$0\.04924/);
  assert.equal(await page.$eval('#timeline-cost', (e) => e.dataset.cost), '0.04924');
  assert.match(await page.textContent('#timeline-cost'), /\$0\.04924 so far/);
  await page.screenshot({ path: resolve(out, 'record-interrupted.png'), fullPage: true });
  assert.deepEqual(problems, []);
});
