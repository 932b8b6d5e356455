// Types for switchboard-client (the implementation is plain ESM in index.js).

export declare const TERMINAL_CLOSE_CODES: readonly number[];
export declare const HISTORY_LOST: 4013;

export declare function backoffDelay(
  attempt: number,
  baseMs?: number,
  maxMs?: number,
  random?: () => number,
): number;

export declare class SwitchboardError extends Error {
  status: number;
  code?: string;
  body: unknown;
}

export interface ClientOptions {
  /** Origin of the Switchboard instance; defaults to `location.origin` in a browser. */
  baseUrl?: string;
  scenarioId?: string;
  rootAgent?: string;
  context?: Record<string, unknown>;
  /** A user token from the host app (JWT), sent to `session2`. */
  authToken?: string;
  /** `auto` (WebSocket, SSE when WebSockets are missing or never open), `ws` or `sse`. */
  transport?: 'auto' | 'ws' | 'sse';
  /** Full-jitter exponential backoff between reconnects. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** A WebSocket constructor (Node); `null` forces SSE. */
  WebSocket?: unknown;
  fetch?: typeof fetch;
  random?: () => number;
}

export interface Envelope<T = any> {
  type: string;
  session_id: string;
  seq: number;
  epoch: string;
  id: string;
  ts: string;
  data: T;
  trace_id?: string;
  span_id?: string;
}

export interface Welcome {
  type: 'welcome';
  session_id: string;
  epoch: string;
  seq: number;
  recovered: boolean;
  replayed: number;
  instance_id: string;
  heartbeat_s: number;
}

export interface SessionState {
  session_id: string;
  scenario_id: string;
  root_agent: string;
  active_agent: string;
  created_at: string;
  updated_at: string;
  epoch: string;
  seq: number;
}

export interface ToolSpec {
  type?: 'function';
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
}

export interface BootstrapAgent {
  name: string;
  instructions?: string;
  voice?: string;
  handoff_description?: string;
  tools?: ToolSpec[];
  handoffs?: string[];
}

export interface Bootstrap {
  session_id: string;
  scenario_id: string;
  root_agent: string;
  ephemeral_key: string | null;
  expires_at: number;
  initial_agents: BootstrapAgent[];
  guardrails: unknown[];
  events: { ws_url: string; sse_url: string; token: string; epoch: string; seq: number };
  warning?: string;
}

export type Status = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface LifecycleEvents {
  welcome: Welcome;
  status: Status;
  resync: { reason: 'not_recovered' | 'history_lost'; state: SessionState };
  closed: { code: number; reason: string };
  error: unknown;
  '*': Envelope;
}

export declare class SwitchboardClient {
  constructor(options?: ClientOptions);
  static start(options: ClientOptions): Promise<SwitchboardClient>;
  readonly sessionId: string | undefined;
  readonly token: string | undefined;
  session: Bootstrap | null;
  seq: number;
  epoch: string;
  status: Status;
  bootstrap(opts?: { scenarioId?: string; rootAgent?: string; context?: Record<string, unknown> }): Promise<Bootstrap>;
  connect(): void;
  close(): void;
  dropConnection(): void;
  on<K extends keyof LifecycleEvents>(type: K, handler: (value: LifecycleEvents[K]) => void): () => void;
  on(type: string, handler: (event: Envelope) => void): () => void;
  off(type: string, handler: (value: any) => void): void;
  state(): Promise<SessionState>;
  executeTool(tool: string, args?: Record<string, unknown>, opts?: { correlationId?: string }): Promise<{
    tool: string; success: boolean; output: unknown; error: string | null; correlation_id: string; duration_ms?: number;
  }>;
  /** Starts a call (Realtime or GPT-Live) from an SDP offer; apply `answer` to the peer. */
  createCall(sdp: string, opts?: { api?: 'realtime' | 'live'; rootAgent?: string }): Promise<{
    callId: string; answer: string; location: string;
  }>;
  /** Ends a call of this session. */
  hangupCall(callId: string): Promise<{ ok: boolean; applied_by: string }>;
  /** A page of this session's conversation record. */
  timeline(opts?: { after?: number; limit?: number; kinds?: RecordKind[] }): Promise<{
    session_id: string; items: RecordItem[]; next_cursor: number | null; cost_usd: string;
  }>;
  /** Recorded sessions; needs the server API key. */
  listSessions(apiKey: string, opts?: {
    from?: string; to?: string; scenario?: string; user?: string;
    sort?: 'started' | '-started' | 'cost' | 'last'; limit?: number; offset?: number;
  }): Promise<{ sessions: RecordedSession[]; total: number; next_offset: number | null }>;
  orchestrate(lastUserText: string, opts?: { transcriptTail?: string[]; context?: Record<string, unknown> }): Promise<{
    chosen_root: string; reason: string; changed: boolean; confidence?: number; source?: string;
  }>;
  moderate(text: string, opts?: { userId?: string; context?: Record<string, unknown> }): Promise<{
    allowed: boolean; categories: Record<string, boolean>; sanitized_text: string | null;
  }>;
}

export interface RealtimeAgentDescription {
  name: string;
  instructions: string;
  voice?: string;
  handoffDescription: string;
  tools: { name: string; description: string; parameters: Record<string, unknown> }[];
  handoffs: string[];
}

export declare function buildRealtimeAgents(bootstrap: Bootstrap): RealtimeAgentDescription[];

export declare function connectRealtime(
  client: SwitchboardClient,
  sdk: { RealtimeAgent: any; RealtimeSession: any; tool: (def: any) => any },
  opts?: { sessionOptions?: Record<string, unknown>; connect?: boolean },
): Promise<{ session: any; agents: Map<string, any>; root: any }>;

/** The kinds of conversation-record items. */
export type RecordKind = 'call.started' | 'call.ended' | 'turn.user' | 'turn.assistant'
  | 'tool.call' | 'agent.switch' | 'moderation' | 'orchestration' | 'usage' | 'error'
  | 'delegation';

/** One item of a session's conversation record. */
export interface RecordItem {
  seq: number;
  at: string;
  kind: RecordKind;
  call_id: string | null;
  agent: string | null;
  /** US dollars as a decimal string, on `usage` items. */
  cost_usd: string | null;
  data: Record<string, unknown>;
}

/** A recorded session in the session list. */
export interface RecordedSession {
  session_id: string; scenario: string; user_id: string | null;
  started_at: string; last_at: string; ended_at: string | null;
  turns: number; tool_calls: number; calls: number; cost_usd: string; live: boolean;
}
