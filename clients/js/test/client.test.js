// The client against a real Switchboard instance: delivery, helpers, reconnect and replay,
// terminal close codes, re-sync after a lost history, and the SSE fallback.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { SwitchboardClient, SwitchboardError } from '../src/index.js';
import {
  API_KEY, publish, record, startInstance, startRedis, tcpProxy, until, sleep,
} from './support.js';

const fast = { baseMs: 50, maxMs: 400 };
const embedded = await startInstance();
after(() => embedded.stop());

const seqs = (log) => log.events.map((e) => e.seq);

test('bootstraps, connects, and delivers published events once, in order', async () => {
  const client = await SwitchboardClient.start({
    baseUrl: embedded.base, scenarioId: 'simpleHandoff', backoff: fast,
  });
  const log = record(client);
  const custom = [];
  client.on('x.demo', (e) => custom.push(e.data.n));
  await until(() => client.status === 'open', 5000, 'open');
  assert.equal(client.session.root_agent, 'greeter');
  for (let n = 1; n <= 3; n += 1) await publish(embedded.base, client.sessionId, 'x.demo', { n });
  await until(() => log.events.length === 3, 5000, 'three events');
  assert.deepEqual(seqs(log), [1, 2, 3]);
  assert.deepEqual(custom, [1, 2, 3]);
  assert.equal(client.seq, 3);
  client.close();
  assert.equal(client.status, 'closed');
});

test('executeTool, orchestrate and moderate answer and publish on the channel', async () => {
  const client = await SwitchboardClient.start({
    baseUrl: embedded.base, scenarioId: 'customerServiceRetail', backoff: fast,
  });
  const switches = [];
  const results = [];
  client.on('agent.switch', (e) => switches.push(e.data));
  client.on('tool.result', (e) => results.push(e.data));
  await until(() => client.status === 'open', 5000, 'open');

  const d = await client.orchestrate('I want to return my snowboard, it arrived broken');
  assert.equal(d.chosen_root, 'returns');
  assert.equal(d.changed, true);
  await until(() => switches.length === 1, 5000, 'agent.switch');
  assert.equal(switches[0].to, 'returns');
  assert.equal((await client.state()).active_agent, 'returns');

  // lookupOrders belongs to the returns agent, now active.
  const r = await client.executeTool('lookupOrders', { phoneNumber: '(206) 555-0100' },
    { correlationId: 'corr-1' });
  assert.equal(r.success, true);
  assert.ok(Array.isArray(r.output.orders) && r.output.orders.length > 0);
  await until(() => results.length === 1, 5000, 'tool.result');
  assert.equal(results[0].correlation_id, 'corr-1');

  const m = await client.moderate('Where is my order?');
  assert.equal(m.allowed, true);

  await assert.rejects(client.executeTool('noSuchTool', {}), (e) => {
    assert.ok(e instanceof SwitchboardError);
    assert.ok(e.status >= 400 && e.status < 500, `a client error, got ${e.status}`);
    return true;
  });
  client.close();
});

test('a bad scenario is a SwitchboardError with the server code', async () => {
  const client = new SwitchboardClient({ baseUrl: embedded.base, scenarioId: 'nope' });
  await assert.rejects(client.bootstrap(), (e) => e instanceof SwitchboardError && e.code === 'unknown_scenario' && e.status >= 400 && e.status < 500);
});

test('reconnects after its instance dies and replays the missed events in order', async () => {
  const redis = await startRedis();
  let a = await startInstance({ redisUrl: redis.url });
  const b = await startInstance({ redisUrl: redis.url });
  try {
    const client = await SwitchboardClient.start({
      baseUrl: a.base, scenarioId: 'simpleHandoff', backoff: fast,
    });
    const log = record(client);
    await until(() => client.status === 'open', 5000, 'open');
    for (let n = 1; n <= 3; n += 1) await publish(b.base, client.sessionId, 'x.n', { n });
    await until(() => log.events.length === 3, 5000, 'live events');

    await a.stop('SIGKILL');
    await until(() => client.status === 'reconnecting', 5000, 'reconnecting');
    for (let n = 4; n <= 8; n += 1) await publish(b.base, client.sessionId, 'x.n', { n });
    a = await startInstance({ port: a.port, redisUrl: redis.url });
    await until(() => log.events.length === 8, 15_000, 'replay');
    await publish(b.base, client.sessionId, 'x.n', { n: 9 });
    await until(() => log.events.length === 9, 5000, 'live after replay');

    assert.deepEqual(seqs(log), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(log.events.map((e) => e.data.n), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const resumed = log.welcomes.at(-1);
    assert.equal(resumed.recovered, true);
    assert.equal(resumed.replayed, 5);
    assert.equal(log.resyncs.length, 0);
    client.close();
  } finally {
    await a.stop();
    await b.stop();
    await redis.stop();
  }
});

test('stops on a terminal close code (revoked session: 4009) and never reconnects', async () => {
  const client = await SwitchboardClient.start({
    baseUrl: embedded.base, scenarioId: 'simpleHandoff', backoff: fast,
  });
  const log = record(client);
  await until(() => client.status === 'open', 5000, 'open');
  const r = await fetch(`${embedded.base}/api/sessions/${client.sessionId}`, {
    method: 'DELETE', headers: { authorization: `Bearer ${API_KEY}` },
  });
  assert.equal(r.status, 204);
  await until(() => log.closed.length === 1, 5000, 'closed');
  assert.equal(log.closed[0].code, 4009);
  assert.equal(client.status, 'closed');
  const welcomes = log.welcomes.length;
  await sleep(800);
  assert.equal(log.welcomes.length, welcomes, 'no reconnect after a terminal code');
});

test('re-syncs from the session state when Redis comes back empty (4013)', async () => {
  const redis = await startRedis();
  const a = await startInstance({ redisUrl: redis.url });
  let r2 = redis;
  try {
    const client = await SwitchboardClient.start({
      baseUrl: a.base, scenarioId: 'simpleHandoff', backoff: fast,
    });
    const log = record(client);
    await until(() => client.status === 'open', 5000, 'open');
    await publish(a.base, client.sessionId, 'x.before', {});
    await until(() => log.events.length === 1, 5000, 'first event');
    const oldEpoch = client.epoch;

    await redis.stop();
    r2 = await startRedis(redis.port);
    await until(() => log.resyncs.length >= 1, 20_000, 'resync');
    const { state } = log.resyncs.at(-1);
    assert.notEqual(state.epoch, oldEpoch, 'a new history');
    await until(() => client.status === 'open' && client.epoch === state.epoch, 10_000, 'reopened');

    await until(async () => {
      try { await publish(a.base, client.sessionId, 'x.after', {}); return true; } catch { return false; }
    }, 10_000, 'publish after restart');
    await until(() => log.events.some((e) => e.type === 'x.after'), 5000, 'event in the new epoch');
    const after = log.events.find((e) => e.type === 'x.after');
    assert.equal(after.epoch, state.epoch);
    client.close();
  } finally {
    await a.stop();
    await r2.stop();
  }
});

test('uses SSE where there is no WebSocket, and recovers after a drop', async () => {
  const client = await SwitchboardClient.start({
    baseUrl: embedded.base, scenarioId: 'simpleHandoff', backoff: fast, WebSocket: null,
  });
  const log = record(client);
  await until(() => client.status === 'open', 5000, 'open');
  assert.equal(client.conn.kind, 'sse');
  await publish(embedded.base, client.sessionId, 'x.s', { n: 1 });
  await until(() => log.events.length === 1, 5000, 'first SSE event');
  client.dropConnection();
  await publish(embedded.base, client.sessionId, 'x.s', { n: 2 });
  await publish(embedded.base, client.sessionId, 'x.s', { n: 3 });
  await until(() => log.events.length === 3, 5000, 'missed events over SSE');
  assert.deepEqual(seqs(log), [1, 2, 3]);
  assert.ok(log.welcomes.length >= 2, 'it reconnected');
  client.close();
});

test('auto transport falls back to SSE when WebSockets never open', async () => {
  let attempts = 0;
  class BlockedSocket {
    constructor() {
      attempts += 1;
      setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 5);
    }
    close() {}
    send() {}
  }
  const client = await SwitchboardClient.start({
    baseUrl: embedded.base, scenarioId: 'simpleHandoff', backoff: fast, WebSocket: BlockedSocket,
  });
  await until(() => client.status === 'open', 10_000, 'open over SSE');
  assert.equal(attempts, 3);
  assert.equal(client.conn.kind, 'sse');
  client.close();
});

for (const transport of ['ws', 'sse']) {
  test(`a connection that goes silent is redialed and resumed (${transport})`, async () => {
    const beat = await startInstance({ env: { SWITCHBOARD_HEARTBEAT: '1s' } });
    const proxy = await tcpProxy(beat.port);
    try {
      const client = new SwitchboardClient({
        baseUrl: proxy.base, scenarioId: 'simpleHandoff', backoff: fast, transport,
      });
      const log = record(client);
      await client.bootstrap();
      client.connect();
      await until(() => client.status === 'open', 5000, 'open');
      assert.equal(log.welcomes[0].heartbeat_s, 1);
      assert.equal(client.conn.kind, transport);
      await publish(beat.base, client.sessionId, 'x.h', { n: 1 });
      await until(() => log.events.length === 1, 5000, 'first event');

      proxy.freeze(); // the path dies without a close
      const frozenAt = Date.now();
      await publish(beat.base, client.sessionId, 'x.h', { n: 2 });
      await publish(beat.base, client.sessionId, 'x.h', { n: 3 });
      await until(() => log.events.length === 3, 10_000, 'events after the redial');
      const took = Date.now() - frozenAt;
      assert.ok(took >= 1500, `not at once: after about two heartbeats of silence (${took} ms)`);
      assert.deepEqual(seqs(log), [1, 2, 3]);
      assert.equal(log.welcomes.at(-1).recovered, true);
      client.close();
    } finally {
      await proxy.close();
      await beat.stop();
    }
  });
}
