// The demo page: pick a scenario, start a session with the published client, watch the
// event channel, and drive tools, orchestration, moderation and (with a key) voice.
import { SwitchboardClient } from '/switchboard-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let scenarios = [];
let client = null;
let call = null;

function show(id, on = true) { $(id).hidden = !on; }

function option(value, label = value) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  return o;
}

function showResult(label, value) {
  $('result').textContent = `${label}\n${JSON.stringify(value, null, 2)}`;
}

async function loadScenarios() {
  const r = await fetch('/api/scenarios');
  scenarios = await r.json();
  const want = params.get('scenario') ?? params.get('agentConfig');
  for (const s of scenarios) $('scenario').append(option(s.id, s.label ?? s.id));
  if (want && scenarios.some((s) => s.id === want || s.aliases?.includes(want))) {
    $('scenario').value = scenarios.find((s) => s.id === want || s.aliases?.includes(want)).id;
  }
  fillRoots();
}

function fillRoots() {
  const s = scenarios.find((x) => x.id === $('scenario').value);
  $('root').replaceChildren(...(s?.agents ?? []).map((a) => option(a)));
  $('root').value = params.get('root') && s?.agents.includes(params.get('root'))
    ? params.get('root') : s?.default_root;
  $('scenario-description').textContent = s?.description ?? '';
}

// Example arguments from a tool's JSON Schema, so "Run tool" works as shipped.
function example(schema, key = '') {
  if (!schema) return null;
  if (schema.enum) return schema.enum[0];
  switch (schema.type) {
    case 'object': {
      const out = {};
      for (const [k, v] of Object.entries(schema.properties ?? {})) out[k] = example(v, k);
      return out;
    }
    case 'array': return [example(schema.items, key)].filter((x) => x !== null);
    case 'number': case 'integer': return 1;
    case 'boolean': return false;
    case 'string': {
      const p = schema.pattern ?? '';
      if (p.includes('\\(\\d{3}\\)') || /phone/i.test(key)) return '(206) 555-0100';
      if (p.includes('\\d{4}-\\d{2}-\\d{2}') || /date/i.test(key)) return '1990-01-01';
      return 'example';
    }
    default: return null;
  }
}

function renderAgents(session, active) {
  const list = $('agents');
  list.replaceChildren();
  const tools = new Map();
  for (const a of session.initial_agents) {
    const li = document.createElement('li');
    li.dataset.agent = a.name;
    li.classList.toggle('active', a.name === active);
    const name = document.createElement('strong');
    name.textContent = a.name;
    const desc = document.createElement('div');
    desc.className = 'muted';
    desc.textContent = a.handoff_description ?? '';
    const ul = document.createElement('ul');
    for (const t of a.tools ?? []) {
      const item = document.createElement('li');
      item.textContent = t.name.startsWith('transfer_to_') ? `${t.name} (handoff)` : t.name;
      ul.append(item);
      if (!t.name.startsWith('transfer_to_')) tools.set(t.name, t);
    }
    li.append(name, desc, ul);
    list.append(li);
  }
  $('tool').replaceChildren(...[...tools.keys()].map((n) => option(n)));
  $('tool').disabled = tools.size === 0;
  $('run-tool').disabled = tools.size === 0;
  const fill = () => {
    const t = tools.get($('tool').value);
    $('tool-args').value = t ? JSON.stringify(example(t.parameters), null, 2) : '{}';
  };
  $('tool').onchange = fill;
  fill();
}

function markActive(name) {
  for (const li of $('agents').children) li.classList.toggle('active', li.dataset.agent === name);
}

function summary(ev) {
  const d = ev.data ?? {};
  switch (ev.type) {
    case 'agent.switch': return `${d.from ?? '?'} → ${d.to} (${d.source ?? ''}) ${d.reason ?? ''}`;
    case 'tool.result': return `${d.tool} ${d.success ? 'ok' : 'failed'} [${d.correlation_id}]`;
    case 'moderation.flagged': return JSON.stringify(d.categories ?? d);
    default: return JSON.stringify(d).slice(0, 160);
  }
}

function logLine(text, attrs = {}, lifecycle = false) {
  const li = document.createElement('li');
  li.textContent = text;
  if (lifecycle) li.className = 'lifecycle';
  Object.assign(li.dataset, attrs);
  $('events').prepend(li);
  const n = $('events').querySelectorAll('li[data-seq]').length;
  $('event-count').textContent = `(${n} events)`;
}

function setupVoice(session) {
  show('voice');
  const offline = String(session.warning ?? '').startsWith('upstream_not_configured');
  if (session.voice_api === 'live' && !offline) {
    $('voice-note').textContent = 'This scenario runs on GPT-Live: Switchboard creates the '
      + 'voice session with its own key (the browser gets none) and answers what the voice '
      + 'model delegates, with the active agent and its tools, on the server.';
    $('voice-note').dataset.voice = 'available';
    show('voice-start');
    return;
  }
  if (!session.ephemeral_key) {
    $('voice-note').textContent = 'This server has no OPENAI_API_KEY, so it minted no '
      + 'ephemeral key. Everything above works without one: sessions, agents, tools, '
      + 'orchestration, moderation and the live event channel. Only the voice call needs '
      + 'the key: set OPENAI_API_KEY and restart Switchboard to talk to the agents.';
    $('voice-note').dataset.voice = 'unavailable';
    return;
  }
  $('voice-note').textContent = 'The browser sends its microphone straight to the model over '
    + 'WebRTC; Switchboard sets the call up and follows it from the server.';
  $('voice-note').dataset.voice = 'available';
  show('voice-start');
}

async function startVoice() {
  $('voice-start').disabled = true;
  try {
    const pc = new RTCPeerConnection();
    pc.ontrack = (e) => { $('voice-audio').srcObject = e.streams[0]; };
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const track of mic.getTracks()) pc.addTrack(track, mic);
    const events = pc.createDataChannel('oai-events');
    await pc.setLocalDescription(await pc.createOffer());
    // One endpoint for both voice APIs: the server picks the scenario's.
    const { callId, answer } = await client.createCall(pc.localDescription.sdp);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    if (client.session.voice_api === 'live') {
      // GPT-Live starts with the POST: wait for `session.started`, never send `session.start`.
      $('voice-note').textContent = 'Connecting to GPT-Live...';
      events.addEventListener('message', (m) => {
        let ev = null;
        try { ev = JSON.parse(m.data); } catch { return; }
        if (ev?.type === 'session.started') $('voice-note').textContent = 'GPT-Live session started: speak.';
      });
    }
    call = { pc, mic, id: callId };
    show('voice-start', false);
    show('voice-stop');
  } catch (e) {
    $('voice-note').textContent = String(e.message ?? e);
    $('voice-start').disabled = false;
  }
}

async function stopVoice() {
  if (!call) return;
  if (call.id) {
    await client.hangupCall(call.id).catch(() => {});
  }
  for (const t of call.mic.getTracks()) t.stop();
  call.pc.close();
  call = null;
  show('voice-stop', false);
  show('voice-start');
  $('voice-start').disabled = false;
}

async function start() {
  show('setup-error', false);
  $('start').disabled = true;
  client?.close();
  $('events').replaceChildren();
  try {
    client = new SwitchboardClient({
      baseUrl: location.origin,
      scenarioId: $('scenario').value,
      rootAgent: $('root').value,
      transport: $('transport').value,
    });
    window.switchboardDemo = { client };
    client.on('status', (s) => {
      $('status').textContent = s;
      $('status').dataset.status = s;
    });
    client.on('welcome', (w) => logLine(
      `welcome: instance ${w.instance_id}, seq ${w.seq}, recovered ${w.recovered}, replayed ${w.replayed}`,
      { kind: 'welcome', recovered: String(w.recovered), replayed: String(w.replayed) }, true,
    ));
    client.on('resync', (r) => {
      logLine(`re-synced (${r.reason}): active agent ${r.state.active_agent}, seq ${r.state.seq}`,
        { kind: 'resync' }, true);
      markActive(r.state.active_agent);
    });
    client.on('closed', (c) => logLine(`closed for good: ${c.code} ${c.reason}`, { kind: 'closed' }, true));
    client.on('*', (ev) => {
      logLine(`#${ev.seq} ${ev.type} ${summary(ev)}`, { seq: String(ev.seq), type: ev.type });
      $('session-info').textContent = `session ${client.sessionId} · epoch ${client.epoch} · seq ${client.seq}`;
      scheduleTimeline();
    });
    client.on('agent.switch', (ev) => markActive(ev.data.to));
    const session = await client.bootstrap();
    client.connect();
    $('session-info').textContent = `session ${session.session_id} · epoch ${session.events.epoch}`;
    renderAgents(session, session.root_agent);
    for (const id of ['agents-card', 'actions', 'record-card', 'events-card']) show(id);
    $('timeline').replaceChildren();
    refreshTimeline();
    setupVoice(session);
  } catch (e) {
    $('setup-error').textContent = e.message ?? String(e);
    show('setup-error');
  } finally {
    $('start').disabled = false;
  }
}

// The conversation record: one line per item, refreshed as events arrive.
function describe(item) {
  const d = item.data ?? {};
  const json = (v) => JSON.stringify(v ?? null);
  switch (item.kind) {
    case 'turn.user': return `caller: ${d.text ?? ''}`;
    case 'turn.assistant': return `${item.agent ?? 'assistant'}: ${d.text ?? ''}`
      + (d.interrupted ? ' [interrupted]' : '');
    case 'tool.call': return `${d.tool}(${json(d.arguments)}) → ${d.success ? json(d.result).slice(0, 200) : `error: ${d.error}`} `
      + `(${d.duration_ms} ms, ${d.by})`;
    case 'agent.switch': return `${d.from} → ${d.to} (${d.source}): ${d.reason ?? ''}`;
    case 'orchestration': return `orchestrator: ${d.chosen}${d.changed ? ' (switched)' : ''}: ${d.reason ?? ''}`;
    case 'moderation': return `moderation: ${d.allowed ? 'allowed' : `flagged ${json(d.categories)}`}`;
    case 'usage': return `usage ${d.model ?? ''}: $${item.cost_usd ?? '0'}`;
    case 'delegation': return `delegated "${d.task}" → ${d.answer}${d.late ? ' (late)' : ''}`;
    default: return `${item.kind} ${json(d).slice(0, 160)}`;
  }
}

let timelineTimer = null;
async function refreshTimeline() {
  if (!client?.sessionId) return;
  try {
    const items = [];
    let after = 0;
    let cost = '0.00';
    for (;;) {
      const page = await client.timeline({ after, limit: 500 });
      items.push(...page.items);
      cost = page.cost_usd;
      if (page.next_cursor === null) break;
      after = page.next_cursor;
    }
    $('timeline').replaceChildren(...items.map((item) => {
      const li = document.createElement('li');
      li.dataset.kind = item.kind;
      li.dataset.seq = String(item.seq);
      if (item.data?.interrupted) li.dataset.interrupted = 'true';
      li.textContent = describe(item);
      if (item.data?.interrupted && item.data?.generated_text) {
        li.title = `generated: ${item.data.generated_text}`;
      }
      return li;
    }));
    $('timeline-cost').textContent = `($${cost} so far)`;
    $('timeline-cost').dataset.cost = cost;
  } catch (e) {
    $('timeline-cost').textContent = `(record unavailable: ${e.message})`;
  }
}

function scheduleTimeline() {
  clearTimeout(timelineTimer);
  timelineTimer = setTimeout(refreshTimeline, 300);
}

async function loadPast() {
  show('past-error', false);
  try {
    const probe = client ?? new SwitchboardClient({ baseUrl: location.origin });
    const list = await probe.listSessions($('past-key').value, { limit: 50 });
    $('past-rows').replaceChildren(...list.sessions.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.session = s.session_id;
      for (const v of [s.started_at.replace('T', ' ').slice(0, 19), s.scenario, s.user_id ?? '',
        s.turns, s.tool_calls, s.cost_usd, s.live ? 'live' : '']) {
        const td = document.createElement('td');
        td.textContent = String(v);
        tr.append(td);
      }
      return tr;
    }));
    show('past');
  } catch (e) {
    $('past-error').textContent = e.message ?? String(e);
    show('past-error');
    show('past', false);
  }
}

async function act(label, fn) {
  try {
    showResult(label, await fn());
  } catch (e) {
    showResult(`${label} failed`, { status: e.status, code: e.code, message: e.message });
  }
}

$('scenario').addEventListener('change', fillRoots);
$('start').addEventListener('click', start);
$('run-tool').addEventListener('click', () => act(`tool ${$('tool').value}`, () => {
  let args;
  try { args = JSON.parse($('tool-args').value || '{}'); } catch (e) {
    throw Object.assign(new Error(`the arguments are not JSON: ${e.message}`), { code: 'bad_json' });
  }
  return client.executeTool($('tool').value, args);
}));
$('orchestrate').addEventListener('click', () => act('orchestration',
  () => client.orchestrate($('orchestrate-text').value)));
$('moderate').addEventListener('click', () => act('moderation',
  () => client.moderate($('moderate-text').value)));
$('drop').addEventListener('click', () => client?.dropConnection());
$('voice-start').addEventListener('click', startVoice);
$('timeline-refresh').addEventListener('click', refreshTimeline);
$('past-load').addEventListener('click', loadPast);
$('voice-stop').addEventListener('click', stopVoice);

loadScenarios().catch((e) => {
  $('setup-error').textContent = `could not load scenarios: ${e.message}`;
  show('setup-error');
});
