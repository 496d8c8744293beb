// duplex.d.ts — hand-written types of /duplex.js, the browser client of a
// duplex hub (served beside it). The guide is docs/client.md, "Browser:
// duplex.js"; the wire is docs/protocol.md.

/** A transport one connection uses. */
export type Transport = 'ws' | 'sse' | 'ndjson' | 'poll';

/** The order `auto` tries transports in. */
export const ORDER: readonly Transport[];

/** Where a subscription stands on one channel. An empty epoch matches any. */
export interface Position { epoch: string; offset: number }

/** A cursor as an object: channel → position. */
export type CursorObject = Record<string, Position>;

export interface ConnectOptions {
  /** Default 'auto': ws → sse → ndjson → poll, remembered once one works. */
  transport?: 'auto' | Transport;
  /**
   * A JWT, or a function returning one (or a promise of one). A function is
   * called at the start, again before the token's exp (60 s, or 10 % of its
   * life when shorter, early) and after a 401 or a 1008 "token expired".
   */
  token?: string | (() => string | Promise<string>);
  /** Share one hub connection among the origin's tabs through a SharedWorker (in-page when there is none). */
  shared?: boolean;
  /** Full-jitter exponential backoff, in ms. Defaults: base 250, cap 10000. */
  backoff?: { base?: number; cap?: number };
  /** Long-poll timeout in seconds. Default 25. */
  pollTimeout?: number;
  /** Receives one line per notable event (fallbacks, malformed lines). */
  log?: (line: string) => void;
}

/** An envelope, the same on every transport. */
export interface Envelope<T = unknown> {
  type: 'message';
  channel: string;
  epoch: string;
  offset: number;
  /** The hub's publish time, Unix ms. */
  time: number;
  data: T;
}

/** Messages before `next` on `channel` are no longer held by the hub. */
export interface Gap {
  type: 'gap';
  channel: string;
  epoch: string;
  next: number;
  [more: string]: unknown;
}

export type StateName = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StateEvent {
  state: StateName;
  /** The transport tried or open; null once closed. */
  transport: Transport | null;
  /** reconnecting: 1, 2, … since the last connection that worked. */
  attempt?: number;
  /** reconnecting: ms until the next try (0 after cut(), online or visibility). */
  delay?: number;
  /** closed: why; reconnecting: 'offline' while navigator.onLine is false. */
  reason?: string;
}

export interface Disconnect { transport: 'ws'; code: number; reason: string; clean: boolean }

export interface Handlers<T = unknown> {
  message?(env: Envelope<T>): void;
  gap?(g: Gap): void;
  state?(s: StateEvent): void;
  /** The subscription has ended for good (a 400/401/403, 1008, a refused subscribe). */
  error?(e: Error & { code?: string | number; status?: number }): void;
  /** Every WebSocket close. */
  disconnect?(d: Disconnect): void;
  /** Each connection attempt's transport (older than state; kept). */
  transport?(t: Transport): void;
  /** A member joined a channel (with opts.joinLeave). Not a message: no offset. */
  join?(e: PresenceEvent): void;
  /** A member left a channel (with opts.joinLeave). */
  leave?(e: PresenceEvent): void;
}

/** A presence member (docs/protocol.md, "Presence"). */
export interface Member {
  client: string;
  /** The token's sub, or empty. */
  user: string;
  transport: 'ws' | 'sse' | 'stream' | 'poll';
  /** Unix ms. */
  joined: number;
  info?: unknown;
}

export interface PresenceEvent {
  type: 'join' | 'leave';
  channel: string;
  client: string;
  user: string;
  info?: unknown;
}

export interface SubscribeOptions {
  /** "chan:epoch:offset,…" (epoch may be empty) or an object; resume after it. */
  cursor?: string | CursorObject;
  /** Receive join and leave events (channels must match the hub's --presence). */
  joinLeave?: boolean;
  /** A small JSON value shown with this subscription's presence member (at most 1024 bytes). */
  info?: unknown;
}

export interface Stats {
  transport: Transport | null;
  state: StateName;
  /** Envelopes delivered to handlers.message. */
  messages: number;
  /** Wire payload received: WS frame text, SSE event data, NDJSON bytes, poll bodies. */
  bytes: number;
  /** WebSocket opens, EventSource opens, fetches. */
  requests: number;
  reconnects: number;
  gaps: number;
}

export interface Subscription {
  /** The transport in use now, or null. */
  readonly transport: Transport | null;
  /** The last state. */
  readonly state: StateName;
  /** Where to resume from: "chan:epoch:offset,…". */
  cursor(): string;
  stats(): Stats;
  /** Drops the connection on purpose; it reconnects at once from the cursor. */
  cut(): void;
  close(): Promise<void>;
}

export interface Published { channel: string; epoch: string; offset: number; time: number }

export interface HistoryPage<T = unknown> {
  channel: string;
  epoch: string;
  messages: Envelope<T>[];
  /** The `after` of the next page. */
  next: number;
  oldest: number;
  latest: number;
}

export interface Hub {
  /** Over an open WebSocket of this hub if there is one, else POST /v1/channels/{c}/messages. */
  publish(channel: string, data: unknown): Promise<Published>;
  history<T = unknown>(channel: string, opts?: { after?: number; limit?: number }): Promise<HistoryPage<T>>;
  history<T = unknown>(channel: string, after?: number, limit?: number): Promise<HistoryPage<T>>;
  /** GET /v1/channels/{c}/presence: the channel's members. */
  presence(channel: string): Promise<{ channel: string; members: Member[] }>;
  /** GET /v1/channels/{c}/presence?stats=1: clients and distinct users, without reading members. */
  presenceStats(channel: string): Promise<{ channel: string; clients: number; users: number }>;
  subscribe<T = unknown>(channels: string | string[], handlers?: Handlers<T>, opts?: SubscribeOptions): Subscription;
  /** Closes every subscription of this hub. */
  close(): Promise<unknown>;
}

/** base: the hub's URL; '' is this page's origin. */
export function connect(base?: string, opts?: ConnectOptions): Hub;

export function parseCursor(text: string | CursorObject): CursorObject;
export function cursorText(cur: CursorObject): string;
export function wsCloseAction(code: number): 'fatal' | 'failed' | 'resume';
/** Full jitter: a delay in [0, min(cap, base·2^(attempt−1))) ms. */
export function backoffDelay(attempt: number, opts?: { base?: number; cap?: number }, random?: () => number): number;
/** Whether obj goes to the caller; moves cur past it. */
export function acceptItem(cur: CursorObject, obj: Envelope | Gap): boolean;
export function createLineSplitter(): { push(chunk: string): string[]; flush(): string[] };
export function parseNdjsonLine(line: string): { value: Record<string, unknown> } | { error: string };
export function tokenExpiry(token: string): number;
export function refreshAt(expMs: number, nowMs: number): number;
