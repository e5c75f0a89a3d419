// Type declarations of rollcall.js, the browser client of rollcall's protocol v1.
// The API is described in clients/js/README.md; the wire protocol in docs/protocol.md.

/** JSON values as the server relays them (meta, publication data). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A member of a channel: its subscribed connections (0 in leave grace) and its meta. */
export interface Member {
  conns: number;
  meta: { [key: string]: Json };
}

/** The server message behind an event: `join`, `leave`, `update`, `diff`, or the `state`
 * whose differences from the previous member map are told as events. */
export interface ServerMessage {
  type: string;
  channel?: string | null;
  seq?: number;
  [field: string]: unknown;
}

export type Status = "connecting" | "open" | "reconnecting" | "closed";
export type EventsMode = "all" | "diff" | "count" | "none";

export interface ConnectOptions {
  /** The user id (servers without --token-secret). Ignored when a token is given. */
  user?: string;
  /** A signed connection token (servers with --token-secret). */
  token?: string;
  /** Returns a fresh token: called before the current one expires and after a close 4001. */
  getToken?: () => string | Promise<string>;
  /** Channels to join; none: the server's default channel. */
  channels?: string[];
  /** Events mode of every channel: "all" (default), "diff" (coalesced, where the server offers
   * it; falls back to "all"), "count" or "none". */
  events?: EventsMode;
  /** Channels to watch without joining, or "*" (docs/protocol.md §12). */
  watch?: string[];
  /** The server's admin token, for watching on a server with --admin-token. */
  admin?: string;
  /** A WebSocket implementation other than the global one (tests, Node). */
  WebSocket?: unknown;
}

export interface ChannelEvents {
  join: (user: string, meta: Member["meta"], message: ServerMessage) => void;
  /** `reason` is the server's (`left`, `closed`, `timeout`, ...), or null when the user was
   * found gone by a resync. */
  leave: (user: string, reason: string | null, message: ServerMessage) => void;
  update: (user: string, meta: Member["meta"], message: ServerMessage) => void;
  /** The member map was replaced from a `state` (after a join, a reconnect or a seq gap). */
  sync: (members: Map<string, Member>) => void;
  message: (data: Json, from: string | null) => void;
  count: (users: number, connections: number) => void;
}

export interface Channel {
  readonly name: string;
  /** The live member map, user id -> {conns, meta}; read it, do not change it. */
  members(): Map<string, Member>;
  /** Present users. */
  count(): number;
  /** Replaces this user's meta here; sent again after each reconnect. False when not open. */
  update(meta: { [key: string]: Json }): boolean;
  /** Leaves the channel and stops rejoining it. */
  leave(): boolean;
  /** Publishes to the channel (servers with --client-publish). False when not open. */
  publish(data: Json): boolean;
  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof ChannelEvents>(event: E, fn: ChannelEvents[E]): () => void;
}

export interface ClientEvents {
  status: (status: Status) => void;
  /** A channel the client did not ask for: the server's default one, or a watched one. */
  channel: (channel: Channel) => void;
  /** A message for this user alone (`channel` null). */
  message: (data: Json, from: string | null) => void;
  /** An `error` message of the server, e.g. `forbidden` or `not_joined`. */
  error: (error: { type: "error"; code: string; message: string; ref?: Json }) => void;
}

export interface Client {
  /** The current status. */
  readonly status: Status;
  /** The user id the server gave this connection (its `welcome`). */
  readonly user: string | undefined;
  /** The channel `name`, joined now or at the next connection if not held yet. */
  channel(name: string): Channel;
  /** Every channel held or watched, by name. */
  channels(): Map<string, Channel>;
  /** A `ping` command; resolves on its `pong`. Rejects when not connected. */
  ping(): Promise<void>;
  on<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): () => void;
  /** Closes the connection for good. */
  close(): void;
}

export function connect(url: string, options?: ConnectOptions): Client;
