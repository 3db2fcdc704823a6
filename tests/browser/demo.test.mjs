// The chat demo in headless Chromium (Debian's chromium, driven by
// playwright-core): two pages talk in a room with QoS 2 sends through the
// real gateway and the real chat backend (clients/demo), the gateway is
// restarted mid-conversation (SIGTERM, then started again on the same
// configuration and database), and each page must show every message
// exactly once, in order, with its delivery state. Screenshots of both
// pages are kept in build/artifacts/ (BROWSER_ARTIFACTS to change it).
//
//   RAINBOW_BIN=build/rainbow-server node --test tests/browser/
//
// Skips (with the reason) when there is no Chromium. Every wait is on a
// condition with a generous deadline: CI shares 2 cores.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = resolve(process.env.RAINBOW_BIN || join(ROOT, 'build', 'rainbow-server'));
const PY = '/usr/bin/python3';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = resolve(process.env.BROWSER_ARTIFACTS || join(ROOT, 'build', 'artifacts'));
const DEADLINE = 30000;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

async function until(what, pred, ms = DEADLINE) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      if (await pred()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
}

const children = new Set();
function start(cmd, args, name, dir) {
  const p = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  p.log = '';
  p.stdout.on('data', (d) => { p.log += d; });
  p.stderr.on('data', (d) => { p.log += d; });
  p.exited = new Promise((r) => p.on('exit', (code, sig) => r(code ?? sig)));
  p.name = name;
  children.add(p);
  p.exited.then(() => children.delete(p));
  return p;
}

async function httpOk(url) {
  const r = await fetch(url);
  return r.ok;
}

let dir, conf, gwPort, webPort, gw, web, browser, chromium;

async function startGateway() {
  gw = start(BIN, ['-f', conf], 'gateway', dir);
  await until('the gateway', () => httpOk(`http://127.0.0.1:${gwPort}/hello/`));
}

before(async () => {
  ({ chromium } = await import('playwright-core'));
  dir = mkdtempSync(join(tmpdir(), 'rb-demo-'));
  gwPort = await freePort();
  webPort = await freePort();
  conf = execFileSync(PY, [join(ROOT, 'clients', 'demo', 'demo.py'), '--write-conf',
    '--dir', dir, '--port', String(gwPort), '--web', String(webPort)]).toString().trim();
  await startGateway();
  web = start(PY, [join(ROOT, 'clients', 'demo', 'chat_backend.py'), '-f', conf,
    '--port', String(webPort)], 'chat backend', dir);
  await until('the chat backend', () => httpOk(`http://127.0.0.1:${webPort}/`));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
  for (const p of children) p.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function enter(name) {
  const ctx = await browser.newContext();          // its own localStorage: its own device
  const page = await ctx.newPage();
  page.on('pageerror', (e) => { page.errors = (page.errors || []).concat(String(e)); });
  await page.goto(`http://127.0.0.1:${webPort}/`);
  await page.fill('#name', name);
  await page.fill('#room', 'lobby');
  await page.click('#join button');
  await page.waitForSelector('#status[data-state="open"]', { timeout: DEADLINE });
  await page.waitForSelector('main:not([hidden])', { timeout: DEADLINE });
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#say button');
}

// [{from, text, state}] as the page shows them
function shown(page) {
  return page.$$eval('#messages li', (lis) => lis.map((li) => ({
    from: li.querySelector('.from').textContent,
    text: li.querySelector('.text').textContent,
    state: li.dataset.state,
  })));
}

async function stateOf(page, text) {
  const all = await shown(page);
  const m = all.find((x) => x.text === text);
  return m && m.state;
}

test('two pages chat through a gateway restart without losing a message', { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM} (apt install chromium)` }, async () => {
  const alice = await enter('alice');
  const bob = await enter('bob');
  try {
    await conversation(alice, bob);
  } catch (e) {
    // What each side saw, for the failure report.
    for (const [n, p] of [['alice', alice], ['bob', bob]])
      console.log(n, JSON.stringify(await shown(p)), await p.getAttribute('#status', 'data-state'),
                  p.errors || []);
    console.log('--- gateway\n' + gw.log.slice(-3000) + '\n--- chat backend\n' + web.log.slice(-3000));
    throw e;
  }
});

async function conversation(alice, bob) {
  await say(alice, 'hello bob');
  await until('alice sees her message delivered to both',
    async () => (await stateOf(alice, 'hello bob')) === 'delivered to 2');
  await until('bob sees it', async () => (await stateOf(bob, 'hello bob')) === 'received');

  // The gateway goes away mid-conversation.
  gw.kill('SIGTERM');
  assert.equal(await gw.exited, 0, 'the gateway stops cleanly on SIGTERM');
  await until('both pages notice', async () =>
    (await alice.getAttribute('#status', 'data-state')) === 'reconnecting' &&
    (await bob.getAttribute('#status', 'data-state')) === 'reconnecting');
  await say(alice, 'while you were out');
  assert.equal(await stateOf(alice, 'while you were out'), 'sending');

  await startGateway();
  await until('alice reconnected', async () =>
    (await alice.getAttribute('#status', 'data-state')) === 'open');
  // Bob may reconnect after the push: then it waits in his session.
  await until('her queued message delivered (or kept for bob)', async () =>
    ['delivered to 2', 'delivered to 1, 1 queued'].includes(await stateOf(alice, 'while you were out')));
  await until('bob has it', async () => (await stateOf(bob, 'while you were out')) === 'received');

  await say(bob, 'back again');
  await until('alice has bob\'s answer', async () => (await stateOf(alice, 'back again')) === 'received');
  await until('bob sees his delivered', async () => (await stateOf(bob, 'back again')) === 'delivered to 2');

  // Exactly once each, in order, on both pages.
  const want = [['alice', 'hello bob'], ['alice', 'while you were out'], ['bob', 'back again']];
  for (const page of [alice, bob]) {
    const got = (await shown(page)).map((m) => [m.from, m.text]);
    assert.deepEqual(got, want);
    assert.deepEqual(page.errors || [], []);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  await alice.screenshot({ path: join(ARTIFACTS, 'demo-alice.png'), fullPage: true });
  await bob.screenshot({ path: join(ARTIFACTS, 'demo-bob.png'), fullPage: true });
}
