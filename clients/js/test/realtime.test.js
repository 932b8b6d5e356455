// The pure parts (backoff, agent building) and connectRealtime with a stand-in for the
// @openai/agents-realtime module, against a real instance with a fake OpenAI endpoint.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  SwitchboardClient, SwitchboardError, backoffDelay, buildRealtimeAgents, connectRealtime,
} from '../src/index.js';
import { fakeUpstream, publish, startInstance, until } from './support.js';

const upstream = await fakeUpstream();
// The sidebands attach to a loopback port where nothing listens (they retry; nothing
// leaves the machine).
const keyed = await startInstance({
  env: {
    OPENAI_API_KEY: 'sk-test-js', OPENAI_BASE_URL: upstream.url,
    SWITCHBOARD_REALTIME_WS_URL: 'ws://127.0.0.1:9/v1/realtime',
    OPENAI_LIVE_WS_URL: 'ws://127.0.0.1:9/v1/live/sessions',
  },
});
const keyless = await startInstance();
after(async () => { await keyed.stop(); await keyless.stop(); await upstream.close(); });

test('backoff is full jitter: anywhere in [0, min(max, base * 2^attempt))', () => {
  assert.equal(backoffDelay(0, 100, 5000, () => 0), 0);
  assert.equal(backoffDelay(0, 100, 5000, () => 0.999), 99);
  assert.equal(backoffDelay(3, 100, 5000, () => 0.5), 400);
  assert.equal(backoffDelay(20, 100, 5000, () => 0.999), 4995, 'capped at max');
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(4, 100, 5000)));
  assert.ok(spread.size > 10, 'random, not fixed steps');
});

/** A stand-in for the SDK: records what it is built with. */
function fakeSdk() {
  const made = { agents: [], tools: [], sessions: [] };
  class RealtimeAgent {
    constructor(config) { Object.assign(this, config); made.agents.push(this); }
  }
  class RealtimeSession {
    constructor(agent, options) {
      this.agent = agent; this.options = options; this.updates = []; made.sessions.push(this);
    }
    async connect(opts) { this.connected = opts; }
    updateAgent(agent) { this.updates.push(agent.name); this.agent = agent; }
  }
  const tool = (def) => { made.tools.push(def); return { type: 'function', ...def }; };
  return { sdk: { RealtimeAgent, RealtimeSession, tool }, made };
}

test('buildRealtimeAgents puts the root first and keeps handoffs out of the tools', async () => {
  const client = new SwitchboardClient({
    baseUrl: keyless.base, scenarioId: 'customerServiceRetail', rootAgent: 'salesAgent',
  });
  const boot = await client.bootstrap();
  const agents = buildRealtimeAgents(boot);
  assert.equal(agents[0].name, 'salesAgent');
  assert.deepEqual(agents.map((a) => a.name).sort(),
    ['authentication', 'returns', 'salesAgent', 'simulatedHuman']);
  const sales = agents[0];
  assert.deepEqual(sales.tools.map((t) => t.name), ['lookupNewSales', 'addToCart', 'checkout']);
  assert.ok(sales.tools.every((t) => t.parameters?.type === 'object'));
  assert.deepEqual([...sales.handoffs].sort(), ['authentication', 'returns', 'simulatedHuman']);
});

test('connectRealtime builds linked agents, runs tools on the server and follows agent.switch', async () => {
  const client = await SwitchboardClient.start({
    baseUrl: keyed.base, scenarioId: 'customerServiceRetail',
  });
  await until(() => client.status === 'open', 5000, 'open');
  const { sdk, made } = fakeSdk();
  const { session, agents, root } = await connectRealtime(client, sdk, {
    sessionOptions: { transport: 'webrtc' },
  });
  assert.equal(root.name, 'authentication');
  assert.equal(session.agent, root);
  assert.deepEqual(session.connected, { apiKey: 'ek_test_js' });
  assert.deepEqual(session.options, { transport: 'webrtc' });
  assert.equal(made.agents.length, 4);
  assert.deepEqual(root.handoffs.map((a) => a.name).sort(), ['returns', 'salesAgent', 'simulatedHuman']);
  assert.equal(root.handoffs[0], agents.get(root.handoffs[0].name), 'handoffs are the agent objects');

  // A tool call from the model runs on Switchboard for this session.
  const auth = root.tools.find((t) => t.name === 'authenticate_user_information');
  const out = await auth.execute({
    phone_number: '(206) 555-0100', date_of_birth: '1990-01-01',
    last_4_digits: '1234', last_4_digits_type: 'ssn',
  });
  assert.deepEqual(out, { success: true });

  // The server decides the root changes: the session follows.
  await publish(keyed.base, client.sessionId, 'agent.switch', { from: 'authentication', to: 'returns' });
  await until(() => session.updates.length === 1, 5000, 'updateAgent');
  assert.deepEqual(session.updates, ['returns']);
  client.close();
});

test('connectRealtime without an ephemeral key says why', async () => {
  const client = new SwitchboardClient({ baseUrl: keyless.base, scenarioId: 'simpleHandoff' });
  await client.bootstrap();
  assert.equal(client.session.ephemeral_key, null);
  await assert.rejects(connectRealtime(client, fakeSdk().sdk),
    (e) => e instanceof SwitchboardError && e.code === 'upstream_not_configured');
});

test('createCall starts a call on either voice API from the same endpoint', async () => {
  const realtime = new SwitchboardClient({ baseUrl: keyed.base, scenarioId: 'retail' });
  await realtime.bootstrap();
  assert.equal(realtime.session.voice_api, 'realtime');
  const r = await realtime.createCall('v=0\r\no=- offer\r\n');
  assert.deepEqual([r.callId, r.location], ['rtc_js1', '/api/calls/rtc_js1']);
  assert.ok(r.answer.includes('realtime answer'));

  const live = new SwitchboardClient({ baseUrl: keyed.base, scenarioId: 'customerServiceRetailLive' });
  await live.bootstrap();
  assert.equal(live.session.voice_api, 'live');
  assert.equal(live.session.ephemeral_key, null, 'Live gives the browser no key');
  const l = await live.createCall('v=0\r\no=- offer\r\n');
  assert.equal(l.callId, 'live_js1');
  assert.ok(l.answer.includes('live answer'));

  // The other API on request; a bad offer is the server's 400.
  const other = new SwitchboardClient({ baseUrl: keyed.base, scenarioId: 'retail' });
  await other.bootstrap();
  assert.equal((await other.createCall('v=0\r\n', { api: 'live' })).callId, 'live_js1');
  await assert.rejects(other.createCall('not sdp'),
    (e) => e instanceof SwitchboardError && e.status === 400 && e.code === 'invalid_sdp');
  realtime.close(); live.close(); other.close();
});
