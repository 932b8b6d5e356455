// Test helpers: a real Switchboard binary (embedded or Redis mode), a private redis-server,
// and a fake OpenAI endpoint on loopback. Every process started here is killed by PID.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.SWITCHBOARD_BIN
  ?? resolve(here, '../../../target/debug/switchboard');
export const API_KEY = 'js-test-api-key';
const SECRET = 'js-test-session-secret-0123456789abcdef';

const started = new Set();
process.on('exit', () => { for (const p of started) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

export function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `pred()` is truthy (polled), or rejects after `ms`. */
export async function until(pred, ms = 10_000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function track(child) {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

/** A private redis-server on a free loopback port. */
export async function startRedis(port) {
  port ??= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sb-js-redis-'));
  const child = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }));
  // Its working directory goes with it (nothing is saved there: no RDB, no AOF).
  child.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  await until(() => new Promise((ok) => {
    const c = net.connect(port, '127.0.0.1', () => { c.end(); ok(true); });
    c.on('error', () => ok(false));
  }), 10_000, 'redis-server');
  return { port, url: `redis://127.0.0.1:${port}`, child, stop: () => stop(child) };
}

export async function stop(child, signal = 'SIGKILL') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await gone;
}

/** Starts the Switchboard binary and waits until `/api/ready` answers 200. */
export async function startInstance({ port, redisUrl, env = {} } = {}) {
  port ??= await freePort();
  const vars = {
    PATH: process.env.PATH,
    RUST_LOG: 'warn',
    SWITCHBOARD_PORT: String(port),
    SWITCHBOARD_API_KEY: API_KEY,
    SWITCHBOARD_SESSION_SECRET: SECRET,
    SWITCHBOARD_RATE_LIMIT_IP: 'off',
    SWITCHBOARD_RATE_LIMIT_USER: 'off',
    SWITCHBOARD_ALLOW_ANONYMOUS: 'true',
    SWITCHBOARD_POSITION_CHECK: '1s',
    // Each instance its own in-memory record unless a test names a database.
    SWITCHBOARD_RECORD_SQLITE: ':memory:',
    ...env,
  };
  if (redisUrl) vars.SWITCHBOARD_REDIS_URL = redisUrl;
  const child = track(spawn(BIN, [], { env: vars, stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const base = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`switchboard exited: ${stderr}`);
    try { return (await fetch(`${base}/api/ready`)).status === 200; } catch { return false; }
  }, 20_000, 'switchboard ready');
  return { port, base, child, stop: (signal) => stop(child, signal) };
}

/** Publishes through the server API (`POST /api/sessions/{id}/events`). */
export async function publish(base, sessionId, type, data = {}) {
  const r = await fetch(`${base}/api/sessions/${sessionId}/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type, data }),
  });
  if (r.status !== 202) throw new Error(`publish: ${r.status} ${await r.text()}`);
  return r.json();
}

/** A fake OpenAI endpoint that mints ephemeral keys. */
export async function fakeUpstream() {
  const requests = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, body });
      if (req.method === 'POST' && req.url === '/v1/realtime/calls') {
        res.writeHead(201, { 'content-type': 'application/sdp', location: '/v1/realtime/calls/rtc_js1' });
        res.end('v=0\r\no=- realtime answer\r\n');
      } else if (req.method === 'POST' && req.url === '/v1/live/sessions') {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ session: { id: 'live_js1' },
          transport: { type: 'webrtc', sdp: 'v=0\r\no=- live answer\r\n' } }));
      } else if (req.method === 'POST' && req.url === '/v1/realtime/client_secrets') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ value: 'ek_test_js', expires_at: 1_900_000_000,
          session: { type: 'realtime', model: 'gpt-realtime' } }));
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"not faked"}}');
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/v1`, requests, close: () => new Promise((r) => server.close(r)),
  };
}

/** Collects a client's envelopes and lifecycle events. */
export function record(client) {
  const log = { events: [], welcomes: [], resyncs: [], closed: [], statuses: [] };
  client.on('*', (e) => log.events.push(e));
  client.on('welcome', (w) => log.welcomes.push(w));
  client.on('resync', (r) => log.resyncs.push(r));
  client.on('closed', (c) => log.closed.push(c));
  client.on('status', (s) => log.statuses.push(s));
  return log;
}

/**
 * A TCP proxy on loopback whose `freeze()` makes every open connection go silent without
 * closing it (a half-open network path); connections opened later pass normally.
 */
export async function tcpProxy(targetPort) {
  const pairs = new Set();
  const frozen = [];
  const server = net.createServer((down) => {
    const up = net.connect(targetPort, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    // Once frozen, neither side hears of the other closing: a true half-open path.
    const drop = () => {
      if (pair.frozen) return;
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', drop);
    up.on('error', drop);
    down.on('close', drop);
    up.on('close', drop);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    freeze() {
      for (const pair of pairs) {
        const { down, up } = pair;
        pair.frozen = true;
        down.unpipe(up);
        up.unpipe(down);
        down.pause();
        up.pause();
        frozen.push(down, up);
      }
      pairs.clear();
    },
    close() {
      for (const { down, up } of pairs) { down.destroy(); up.destroy(); }
      for (const s of frozen) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}
