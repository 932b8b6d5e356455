// Switchboard browser client: one session's event channel, kept alive.
//
// `SwitchboardClient` bootstraps a session with `session2`, opens the event channel
// (WebSocket, or Server-Sent Events read with `fetch` where WebSockets are missing or keep
// failing), remembers the last `seq`/`epoch` it saw, and reconnects with full-jitter
// exponential backoff, asking the server to replay what it missed. A close code that means
// "this session is over" (4001, 4004, 4009) stops it; a lost history (`recovered: false`,
// close 4013) makes it re-read the session state and say so with a `resync` event.
// No dependencies: it runs in browsers and in Node 20+ (pass a `WebSocket` there).

/** Close codes after which reconnecting cannot help. */
export const TERMINAL_CLOSE_CODES = Object.freeze([4001, 4004, 4009]);
/** The history this client was resuming is gone: re-read the state, then reconnect. */
export const HISTORY_LOST = 4013;

/**
 * Full-jitter backoff: a uniform delay in [0, min(maxMs, baseMs * 2^attempt)).
 * @param {number} attempt  0 for the first retry
 */
export function backoffDelay(attempt, baseMs = 250, maxMs = 10_000, random = Math.random) {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** An error from a Switchboard endpoint, in the service's JSON error shape. */
export class SwitchboardError extends Error {
  constructor(status, code, message, body) {
    super(message || code || `HTTP ${status}`);
    this.name = 'SwitchboardError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export class SwitchboardClient {
  /** @param {import('./index').ClientOptions} options */
  constructor(options = {}) {
    const loc = globalThis.location;
    this.baseUrl = (options.baseUrl ?? (loc ? loc.origin : '')).replace(/\/+$/, '');
    if (!this.baseUrl) throw new TypeError('baseUrl is required outside a browser');
    this.options = options;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.WebSocket = 'WebSocket' in options ? options.WebSocket : globalThis.WebSocket;
    this.transport = options.transport ?? 'auto';
    this.backoff = { baseMs: 250, maxMs: 10_000, ...options.backoff };
    this.random = options.random ?? Math.random;
    /** @type {any} */ this.session = null;
    this.seq = 0;
    this.epoch = '';
    this.status = 'idle';
    this.handlers = new Map();
    this.attempt = 0;
    this.wsFailures = 0;
    this.wsOpened = false;
    this.stopped = false;
    this.conn = null;
    this.timer = null;
  }

  /** Bootstraps a session and connects: the usual way to start. */
  static async start(options) {
    const client = new SwitchboardClient(options);
    await client.bootstrap();
    client.connect();
    return client;
  }

  get sessionId() { return this.session?.session_id; }
  get token() { return this.session?.events?.token; }

  /** `POST /api/session2`: creates the session; keeps its payload in `this.session`. */
  async bootstrap({ scenarioId, rootAgent, context } = {}) {
    const o = this.options;
    const body = { scenario_id: scenarioId ?? o.scenarioId };
    if (rootAgent ?? o.rootAgent) body.root_agent = rootAgent ?? o.rootAgent;
    if (context ?? o.context) body.context = context ?? o.context;
    const auth = o.authToken ? { authorization: `Bearer ${o.authToken}` } : {};
    this.session = await this.request('POST', '/api/session2', body, auth);
    this.seq = this.session.events.seq ?? 0;
    this.epoch = this.session.events.epoch ?? '';
    return this.session;
  }

  /**
   * Subscribes to an event type (`agent.switch`, `tool.result`, `x.my.event`, ...), `*` for
   * every event, or a lifecycle name: `welcome`, `status`, `resync`, `closed`, `error`.
   * @returns {() => void} unsubscribes
   */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) { this.handlers.get(type)?.delete(handler); }

  emit(type, value) {
    for (const h of [...(this.handlers.get(type) ?? [])]) {
      try { h(value); } catch (e) { if (type !== 'error') this.emit('error', e); }
    }
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit('status', status);
  }

  /** Opens the event channel (after `bootstrap`). */
  connect() {
    if (!this.session) throw new Error('call bootstrap() before connect()');
    this.stopped = false;
    this.open();
  }

  /** Stops for good: closes the channel and never reconnects. */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.conn?.close();
    this.conn = null;
    this.setStatus('closed');
  }

  /** Drops the current connection as a network failure would (it reconnects and recovers). */
  dropConnection() { this.conn?.drop(); }

  useSse() {
    if (this.transport === 'sse' || !this.WebSocket) return true;
    if (this.transport !== 'auto' || this.wsOpened || this.wsFailures < 3) return false;
    // A proxy that refuses WebSockets: after three attempts that never opened, use SSE, and
    // give WebSockets another chance at reconnects a minute later.
    this.sseSince ??= Date.now();
    if (Date.now() - this.sseSince < 60_000) return true;
    this.wsFailures = 0;
    this.sseSince = undefined;
    return false;
  }

  open() {
    if (this.stopped) return;
    this.setStatus(this.attempt === 0 && this.seq === 0 ? 'connecting' : 'reconnecting');
    const handlers = {
      message: (msg) => this.onMessage(msg),
      close: (code, reason, opened) => this.onClose(code, reason, opened),
    };
    this.conn = this.useSse() ? this.openSse(handlers) : this.openWs(handlers);
  }

  resumeQuery() {
    return `since=${this.seq}&epoch=${encodeURIComponent(this.epoch)}`;
  }

  openWs({ message, close }) {
    const url = new URL(this.session.events.ws_url, this.baseUrl.replace(/^http/, 'ws'));
    url.searchParams.set('since', String(this.seq));
    url.searchParams.set('epoch', this.epoch);
    const ws = new this.WebSocket(url.toString());
    let opened = false;
    let done = false;
    const finish = (code, reason) => {
      if (done) return;
      done = true;
      dog.stop();
      close(code, reason, opened);
    };
    // The server pings at the protocol level, which scripts cannot see; our own ping
    // frames keep answers coming, and a path that stays silent is dropped and redone.
    const dog = watchdog(() => {
      try { ws.close(4000, 'silent'); } catch { /* already closing */ }
      finish(1006, 'no traffic');
    }, () => { if (ws.readyState === 1) ws.send('{"type":"ping"}'); });
    ws.onopen = () => { opened = true; this.wsOpened = true; dog.seen(); };
    ws.onmessage = (e) => {
      dog.seen();
      message(typeof e.data === 'string' ? e.data : String(e.data));
    };
    ws.onclose = (e) => finish(e.code, e.reason);
    // Browsers follow an error with a close event; some runtimes (Node 20) do not when the
    // connection never opened, so a failed attempt ends here too (`finish` runs once).
    ws.onerror = () => { if (!opened) finish(1006, 'connection failed'); };
    return {
      kind: 'ws',
      onWelcome: (w) => dog.heartbeat(w.heartbeat_s),
      close: () => { done = true; dog.stop(); try { ws.close(1000); } catch { /* closed */ } },
      drop: () => { try { ws.close(4000, 'dropped by the client'); } catch { /* closed */ } finish(1006, 'dropped'); },
    };
  }

  openSse({ message, close }) {
    const url = new URL(this.session.events.sse_url, this.baseUrl);
    url.searchParams.set('since', String(this.seq));
    url.searchParams.set('epoch', this.epoch);
    const abort = new AbortController();
    let finished = false;
    const finish = (code, reason, opened) => {
      if (finished) return;
      finished = true;
      dog.stop();
      abort.abort();
      close(code, reason, opened);
    };
    // The server sends a keep-alive comment every heartbeat; silence means a dead path.
    const dog = watchdog(() => finish(1006, 'no traffic', true));
    (async () => {
      let opened = false;
      try {
        const resp = await this.fetch(url.toString(), {
          headers: { accept: 'text/event-stream' },
          signal: abort.signal,
        });
        if (!resp.ok) {
          const body = await resp.json().catch(() => ({}));
          const code = body?.error?.code;
          // SSE answers attach failures with HTTP errors: map them to the close codes.
          const mapped = resp.status === 404 ? 4004
            : code === 'session_expired' ? 4009
              : resp.status === 401 ? 4001 : 1013;
          return finish(mapped, code ?? `HTTP ${resp.status}`, false);
        }
        opened = true;
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        let event = { name: 'message', data: [] };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          dog.seen();
          buf += decoder.decode(value, { stream: true });
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).replace(/\r$/, '');
            buf = buf.slice(nl + 1);
            if (line === '') {
              if (event.data.length) {
                const data = event.data.join('\n');
                if (event.name === 'close') {
                  const notice = JSON.parse(data);
                  return finish(notice.code, notice.reason, true);
                }
                message(data);
              }
              event = { name: 'message', data: [] };
            } else if (line.startsWith('event:')) {
              event.name = line.slice(6).trim();
            } else if (line.startsWith('data:')) {
              event.data.push(line.slice(5).replace(/^ /, ''));
            }
          }
        }
        finish(1006, 'stream ended', opened);
      } catch (e) {
        finish(1006, abort.signal.aborted ? 'closed' : String(e?.message ?? e), opened);
      }
    })();
    return {
      kind: 'sse',
      onWelcome: (w) => dog.heartbeat(w.heartbeat_s),
      close: () => { finished = true; dog.stop(); abort.abort(); },
      drop: () => finish(1006, 'dropped', true),
    };
  }

  async onMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === 'welcome') {
      this.attempt = 0;
      if (this.conn?.kind === 'ws') this.wsFailures = 0;
      this.conn?.onWelcome(msg);
      const resumed = this.seq;
      if (!msg.recovered && (resumed > 0 || msg.epoch !== this.epoch)) {
        // The history we were resuming is gone: what happened meanwhile is in the state.
        this.epoch = msg.epoch;
        this.seq = msg.seq;
        this.emit('welcome', msg);
        await this.resync('not_recovered');
      } else {
        this.epoch = msg.epoch;
        this.emit('welcome', msg);
      }
      this.setStatus('open');
      return;
    }
    if (msg.type === 'pong') return;
    if (msg.type === 'error') { this.emit('error', msg); return; }
    if (typeof msg.seq !== 'number') return;
    if (msg.epoch === this.epoch && msg.seq <= this.seq) return; // already seen
    this.seq = msg.seq;
    this.epoch = msg.epoch ?? this.epoch;
    this.emit(msg.type, msg);
    this.emit('*', msg);
  }

  onClose(code, reason, opened) {
    this.conn = null;
    if (this.stopped) return;
    if (!opened && this.transport === 'auto' && this.WebSocket && !this.wsOpened) this.wsFailures += 1;
    if (TERMINAL_CLOSE_CODES.includes(code)) {
      this.stopped = true;
      this.setStatus('closed');
      this.emit('closed', { code, reason });
      return;
    }
    if (code === HISTORY_LOST) {
      this.resync('history_lost').finally(() => this.schedule());
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.stopped) return;
    this.setStatus('reconnecting');
    const delay = backoffDelay(this.attempt, this.backoff.baseMs, this.backoff.maxMs, this.random);
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  /** Re-reads the session state after a lost history and emits `resync` with it. */
  async resync(reason) {
    try {
      const state = await this.state();
      if (state.epoch !== this.epoch || state.seq > this.seq) {
        this.epoch = state.epoch;
        this.seq = state.seq;
      }
      this.emit('resync', { reason, state });
    } catch (e) {
      this.emit('error', e);
    }
  }

  /** `GET /api/sessions/{id}`: the session's state (active agent, epoch, seq). */
  state() {
    return this.request('GET', `/api/sessions/${this.sessionId}`);
  }

  /** Runs a tool for this session (`tool.result` is also published on the channel). */
  executeTool(tool, args = {}, { correlationId } = {}) {
    const correlation_id = correlationId ?? randomId();
    return this.request('POST', '/api/tools/execute',
      { tool, args, correlation_id, session_id: this.sessionId });
  }

  /**
   * Starts a voice call for this session from the browser's SDP offer, on the scenario's
   * voice API (Realtime or GPT-Live) or the one named in `api`. Apply the returned `answer`
   * with `setRemoteDescription`; on GPT-Live, then wait for `session.started` on the data
   * channel (never send `session.start`). `call.started` also arrives on the channel.
   * @returns {Promise<{callId: string, answer: string, location: string}>}
   */
  async createCall(sdp, { api, rootAgent } = {}) {
    const body = { sdp };
    if (api) body.api = api;
    if (rootAgent) body.root_agent = rootAgent;
    const resp = await this.fetch(`${this.baseUrl}/api/calls?session_id=${encodeURIComponent(this.sessionId)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await resp.text();
    if (resp.status !== 201) {
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON */ }
      throw new SwitchboardError(resp.status, json?.error?.code, json?.error?.message ?? text, json);
    }
    const location = resp.headers.get('location') ?? '';
    return { callId: location.split('/').pop(), answer: text, location };
  }

  /** Ends a call of this session (either voice API). */
  hangupCall(callId) {
    return this.request('POST', `/api/calls/${encodeURIComponent(callId)}/hangup`);
  }

  /**
   * A page of this session's conversation record: `{items, next_cursor, cost_usd}`, oldest
   * first, after the cursor `after`, of `kinds` when given.
   */
  timeline({ after, limit, kinds } = {}) {
    const q = new URLSearchParams();
    if (after !== undefined && after !== null) q.set('after', String(after));
    if (limit) q.set('limit', String(limit));
    if (kinds?.length) q.set('kinds', kinds.join(','));
    const qs = q.toString();
    return this.request('GET', `/api/sessions/${this.sessionId}/timeline${qs ? `?${qs}` : ''}`);
  }

  /**
   * Recorded sessions (`GET /api/sessions`); needs the server API key, so this is for
   * trusted pages and back ends only.
   */
  listSessions(apiKey, { from, to, scenario, user, sort, limit, offset } = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ from, to, scenario, user, sort, limit, offset })) {
      if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    }
    const qs = q.toString();
    return this.request('GET', `/api/sessions${qs ? `?${qs}` : ''}`, undefined,
      { authorization: `Bearer ${apiKey}` });
  }

  /** Asks the orchestrator which agent should be root; a change arrives as `agent.switch`. */
  orchestrate(lastUserText, { transcriptTail, context } = {}) {
    const body = {
      scenario_id: this.session.scenario_id,
      session_id: this.sessionId,
      last_user_text: lastUserText,
    };
    if (transcriptTail) body.transcript_tail = transcriptTail;
    if (context) body.context = context;
    return this.request('POST', '/api/orchestrate', body);
  }

  /** A moderation decision for `text` (a refusal is also published as `moderation.flagged`). */
  moderate(text, { userId, context } = {}) {
    const body = { text, session_id: this.sessionId };
    if (userId) body.user_id = userId;
    if (context) body.context = context;
    return this.request('POST', '/api/moderate', body);
  }

  async request(method, path, body, headers = {}) {
    const h = { accept: 'application/json', ...headers };
    if (this.token && !h.authorization) h.authorization = `Bearer ${this.token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const resp = await this.fetch(this.baseUrl + path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!resp.ok) {
      throw new SwitchboardError(resp.status, json?.error?.code, json?.error?.message ?? text, json);
    }
    return json;
  }
}

/**
 * Calls `onSilent` once nothing has been seen for two heartbeats (plus a second), and `ping`
 * every heartbeat meanwhile. 25 s until the welcome says otherwise.
 */
function watchdog(onSilent, ping) {
  let every = 25_000;
  let last = Date.now();
  let timer = null;
  const arm = () => {
    clearInterval(timer);
    timer = setInterval(() => {
      if (Date.now() - last > 2 * every + 1000) {
        clearInterval(timer);
        onSilent();
        return;
      }
      ping?.();
    }, every);
  };
  arm();
  return {
    seen() { last = Date.now(); },
    heartbeat(seconds) {
      every = Math.max(1, Number(seconds) || 25) * 1000;
      last = Date.now();
      arm();
    },
    stop() { clearInterval(timer); },
  };
}

function randomId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `c-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}

/**
 * The agents of a bootstrap payload as plain descriptions, root first: each with its own
 * function tools (the `transfer_to_*` tools left out) and the names it hands off to.
 */
export function buildRealtimeAgents(bootstrap) {
  const agents = [...(bootstrap.initial_agents ?? [])];
  const root = bootstrap.root_agent ?? agents[0]?.name;
  agents.sort((a, b) => (a.name === root ? -1 : b.name === root ? 1 : 0));
  return agents.map((a) => ({
    name: a.name,
    instructions: a.instructions ?? '',
    voice: a.voice,
    handoffDescription: a.handoff_description ?? '',
    tools: (a.tools ?? [])
      .filter((t) => !String(t.name).startsWith('transfer_to_'))
      .map((t) => ({ name: t.name, description: t.description ?? '', parameters: t.parameters })),
    handoffs: [...(a.handoffs ?? [])],
  }));
}

/**
 * Builds `@openai/agents-realtime` agents from the client's bootstrap payload and connects a
 * `RealtimeSession` with its ephemeral key. Tools run on Switchboard (`executeTool`), and a
 * server-side `agent.switch` moves the call to that agent.
 * @param {SwitchboardClient} client
 * @param {{RealtimeAgent: any, RealtimeSession: any, tool: Function}} sdk  the SDK module
 */
export async function connectRealtime(client, sdk, { sessionOptions = {}, connect = true } = {}) {
  const boot = client.session;
  if (!boot) throw new Error('bootstrap the client first');
  if (!boot.ephemeral_key) {
    throw new SwitchboardError(503, 'upstream_not_configured',
      boot.warning ?? 'the server minted no ephemeral key, so voice is unavailable');
  }
  const defs = buildRealtimeAgents(boot);
  const byName = new Map();
  for (const d of defs) {
    const tools = d.tools.map((t) => sdk.tool({
      name: t.name,
      description: t.description,
      parameters: t.parameters,
      strict: false,
      execute: async (args) => {
        const r = await client.executeTool(t.name, args ?? {});
        return r.success ? r.output : { error: r.error };
      },
    }));
    byName.set(d.name, new sdk.RealtimeAgent({
      name: d.name,
      instructions: d.instructions,
      handoffDescription: d.handoffDescription,
      voice: d.voice,
      tools,
      handoffs: [],
    }));
  }
  for (const d of defs) {
    byName.get(d.name).handoffs = d.handoffs.filter((n) => byName.has(n)).map((n) => byName.get(n));
  }
  const root = byName.get(defs[0].name);
  const session = new sdk.RealtimeSession(root, sessionOptions);
  client.on('agent.switch', (ev) => {
    const next = byName.get(ev.data?.to);
    if (next && typeof session.updateAgent === 'function') session.updateAgent(next);
  });
  if (connect) await session.connect({ apiKey: boot.ephemeral_key });
  return { session, agents: byName, root };
}
