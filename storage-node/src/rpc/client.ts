import http, { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { Logger, silentLogger } from '../util/logger';
import {
  EMPTY_BODY_SHA256, GridSecrets, HEADER_LAYOUT_VERSION, STREAMING_BODY, assertGridSecrets, sha256Hex, signRequest,
} from './auth';
import { PeerBusyError, PeerTimeoutError, PeerUnavailableError, RpcError, isRpcErrorBody } from './errors';
import { collect } from './body';
import { Gate, GateFullError } from './gate';
import { FailureKind, PeerHealth } from './health';
import { MAX_JSON_BYTES, PING_PATH } from './server';

export interface RpcPeer {
  id: string;
  /** `host:port` of the peer's RPC listener. */
  address: string;
}

export interface RpcClientOptions {
  /** This node's id, sent (signed) with every request. */
  nodeId: string;
  secrets: GridSecrets;
  logger?: Logger;
  /** Shared health tracker; one is created when not given. */
  health?: PeerHealth;
  maxConnectionsPerPeer?: number;
  /** Calls in flight per peer (default: maxConnectionsPerPeer); more wait in a bounded queue. */
  maxInFlightPerPeer?: number;
  maxQueuedPerPeer?: number;
  connectTimeoutMs?: number;
  /** Default whole-call deadline of `call`. */
  timeoutMs?: number;
  /** Wait for the response headers once the request is sent (stream/fetchStream). */
  headersTimeoutMs?: number;
  /** A socket with no traffic for this long fails the exchange (stream/fetchStream bodies). */
  idleTimeoutMs?: number;
  /** How long an idle keep-alive socket is kept (must stay below the server's keep-alive time). */
  keepAliveMs?: number;
  maxResponseBytes?: number;
  /** Gossip hook: called with the layout version a peer reports on each response. */
  onLayoutVersion?: (peerId: string, version: number) => void;
}

export interface StreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The response body; consume or destroy it (the per-peer slot is held until it closes). */
  body: Readable;
}

/** JSON bodies stay strings: node:http then sends headers and body in one write instead of a writev. */
type Body = { kind: 'none' } | { kind: 'buffer'; data: string } | { kind: 'stream'; data: Readable };

interface Limits {
  /** Whole exchange deadline, body included (call); undefined for streams. */
  deadlineMs?: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
}

interface PeerConn {
  address: string;
  host: string;
  port: number;
  agent: http.Agent;
  gate: Gate;
}

const MAX_PEERS = 4096;

export class RpcClient {
  readonly health: PeerHealth;
  private readonly o: Required<Omit<RpcClientOptions, 'logger' | 'health' | 'onLayoutVersion' | 'secrets'>>;
  private readonly log: Logger;
  private secrets: GridSecrets;
  private readonly onLayoutVersion?: (peerId: string, version: number) => void;
  private readonly peers = new Map<string, PeerConn>();
  private readonly probeTimers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(opts: RpcClientOptions) {
    assertGridSecrets(opts.secrets);
    const maxConnectionsPerPeer = opts.maxConnectionsPerPeer ?? 32;
    this.o = {
      nodeId: opts.nodeId, maxConnectionsPerPeer, maxInFlightPerPeer: opts.maxInFlightPerPeer ?? maxConnectionsPerPeer,
      maxQueuedPerPeer: opts.maxQueuedPerPeer ?? 256, connectTimeoutMs: opts.connectTimeoutMs ?? 2_000,
      timeoutMs: opts.timeoutMs ?? 30_000, headersTimeoutMs: opts.headersTimeoutMs ?? 30_000,
      idleTimeoutMs: opts.idleTimeoutMs ?? 30_000, keepAliveMs: opts.keepAliveMs ?? 30_000,
      maxResponseBytes: opts.maxResponseBytes ?? MAX_JSON_BYTES,
    };
    this.log = opts.logger ?? silentLogger();
    this.secrets = opts.secrets;
    this.health = opts.health ?? new PeerHealth();
    this.onLayoutVersion = opts.onLayoutVersion;
  }

  setSecrets(secrets: GridSecrets): void {
    assertGridSecrets(secrets);
    this.secrets = secrets;
  }

  /** A JSON call: resolves with the parsed response (undefined for 204), throws the typed errors. */
  async call<T>(peer: RpcPeer, method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    if (data !== undefined && Buffer.byteLength(data) > this.o.maxResponseBytes) throw new RangeError('request body over the JSON limit');
    const deadlineMs = opts.timeoutMs ?? this.o.timeoutMs;
    const res = await this.exchange(peer, method, path, data ? { kind: 'buffer', data } : { kind: 'none' }, {}, {
      deadlineMs, headersTimeoutMs: deadlineMs, idleTimeoutMs: deadlineMs,
    });
    return (await this.readJson(peer, res.res, res.done)) as T;
  }

  /** Uploads a stream (signed as STREAMING); resolves with the status and the JSON answer. */
  async stream(peer: RpcPeer, method: string, path: string, body: Readable, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
    const res = await this.exchange(peer, method, path, { kind: 'stream', data: body }, headers, this.streamLimits());
    const json = await this.readJson(peer, res.res, res.done);
    return { status: res.res.statusCode ?? 0, json };
  }

  /** Downloads: resolves once the headers arrive, with the body as a stream. Error statuses throw RpcError. */
  async fetchStream(peer: RpcPeer, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<StreamResponse> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const r = await this.exchange(peer, method, path, data ? { kind: 'buffer', data } : { kind: 'none' }, headers, this.streamLimits());
    const status = r.res.statusCode ?? 0;
    if (status >= 400) {
      await this.readJson(peer, r.res, r.done); // throws the RpcError
    }
    r.res.once('close', () => {
      // A consumer that stops reading (destroy without an error) says nothing about the peer.
      const err = r.res.errored;
      r.done(r.res.complete || err === null ? undefined : err instanceof PeerTimeoutError ? 'timeout' : 'error');
    });
    return { status, headers: r.res.headers, body: r.res };
  }

  /** One signed ping that bypasses the health gate and the queue: the health probe. */
  async ping(peer: RpcPeer, timeoutMs: number): Promise<boolean> {
    const conn = this.conn(peer);
    try {
      const res = await this.send(peer, conn, 'GET', PING_PATH, { kind: 'none' }, {}, {
        deadlineMs: timeoutMs, headersTimeoutMs: timeoutMs, idleTimeoutMs: timeoutMs,
      });
      res.resume();
      return (res.statusCode ?? 0) < 500;
    } catch {
      return false;
    }
  }

  /** Per-peer counters, for status pages. */
  stats(): { peerId: string; address: string; inFlight: number; queued: number }[] {
    return [...this.peers.entries()].map(([peerId, c]) => ({ peerId, address: c.address, inFlight: c.gate.inFlight, queued: c.gate.queued }));
  }

  close(): void {
    this.closed = true;
    for (const t of this.probeTimers.values()) clearTimeout(t);
    this.probeTimers.clear();
    for (const c of this.peers.values()) {
      c.gate.rejectAll(new Error('client closed'));
      c.agent.destroy();
    }
    this.peers.clear();
  }

  private streamLimits(): Limits {
    return { headersTimeoutMs: this.o.headersTimeoutMs, idleTimeoutMs: this.o.idleTimeoutMs };
  }

  /**
   * Health gate, per-peer slot, send. Resolves with the response (headers received) and a `done`
   * callback that releases the slot and records the outcome once the body has been read.
   */
  private async exchange(peer: RpcPeer, method: string, path: string, body: Body, headers: Record<string, string>, limits: Limits): Promise<{ res: IncomingMessage; done: (failure?: FailureKind) => void }> {
    if (this.closed) throw new PeerUnavailableError(peer.id, 'client closed');
    // A caller's mistake, not the peer's: thrown as is, and the peer's health is left alone.
    for (const k of Object.keys(headers)) {
      if (k.toLowerCase().startsWith('x-archipel-')) {
        if (body.kind === 'stream') body.data.destroy();
        throw new RangeError(`header ${k} is reserved`);
      }
    }
    if (!this.health.isUp(peer.id)) {
      if (body.kind === 'stream') body.data.destroy();
      throw new PeerUnavailableError(peer.id, `peer ${peer.id} is marked down`);
    }
    const conn = this.conn(peer);
    const queuedAtMs = Date.now();
    let release: () => void;
    try {
      release = await conn.gate.acquire(limits.deadlineMs ?? limits.headersTimeoutMs);
    } catch (err) {
      if (body.kind === 'stream') body.data.destroy();
      if (err instanceof GateFullError) throw new PeerBusyError(peer.id, `peer ${peer.id} busy: ${err.message}`);
      throw new PeerUnavailableError(peer.id, 'client closed', { cause: err });
    }
    if (limits.deadlineMs !== undefined) {
      // Time spent queued counts against the call's deadline.
      limits = { ...limits, deadlineMs: Math.max(1, limits.deadlineMs - (Date.now() - queuedAtMs)) };
    }
    let finished = false;
    const done = (failure?: FailureKind): void => {
      if (finished) return;
      finished = true;
      release();
      if (failure !== undefined) this.recordFailure(peer, failure, 'body failed');
    };
    try {
      const res = await this.send(peer, conn, method, path, body, headers, limits);
      this.health.recordSuccess(peer.id);
      return { res, done };
    } catch (err) {
      done();
      throw this.mapFailure(peer, err);
    }
  }

  /** Signs and sends one request; resolves when the response headers arrive. */
  private send(peer: RpcPeer, conn: PeerConn, method: string, path: string, body: Body, extra: Record<string, string>, limits: Limits): Promise<IncomingMessage> {
    const bodySha256 = body.kind === 'stream' ? STREAMING_BODY : body.kind === 'buffer' ? sha256Hex(body.data) : EMPTY_BODY_SHA256;
    const signed = signRequest(this.secrets.current, { method, pathAndQuery: path, nodeId: this.o.nodeId, bodySha256, dateMs: Date.now() });
    for (const k of Object.keys(extra)) if (k.toLowerCase().startsWith('x-archipel-')) throw new RangeError(`header ${k} is reserved`);
    const headers: Record<string, string> = { ...extra, ...signed };
    if (body.kind === 'buffer') {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body.data));
    }
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = http.request({ host: conn.host, port: conn.port, method, path, headers, agent: conn.agent });
      const timers: NodeJS.Timeout[] = [];
      let response: IncomingMessage | undefined;
      const fail = (err: Error): void => {
        // Once the headers are in, the body reader must see this error, not a generic reset.
        response?.destroy(err);
        req.destroy(err);
      };
      const timeout = (what: string, ms: number): PeerTimeoutError =>
        new PeerTimeoutError(peer.id, `${peer.id} (${peer.address}): ${what} timeout after ${ms} ms`);
      const arm = (ms: number, what: string): NodeJS.Timeout => {
        const t = setTimeout(() => fail(timeout(what, ms)), ms);
        timers.push(t);
        return t;
      };
      let headersTimer: NodeJS.Timeout | undefined;
      if (limits.deadlineMs !== undefined) {
        // One timer covers the whole call, body included; it stays armed until the exchange closes.
        const t = arm(limits.deadlineMs, 'call');
        req.once('close', () => clearTimeout(t));
      } else {
        req.setTimeout(limits.idleTimeoutMs, () => fail(timeout('idle', limits.idleTimeoutMs)));
        // The headers wait starts once the upload is sent: a long upload is bounded by the idle timeout.
        req.once('finish', () => (headersTimer = arm(limits.headersTimeoutMs, 'headers')));
      }
      req.once('socket', (socket) => {
        if (!socket.connecting) return;
        const t = arm(this.o.connectTimeoutMs, 'connect');
        socket.once('connect', () => clearTimeout(t));
      });
      req.once('response', (res) => {
        clearTimeout(headersTimer);
        response = res;
        this.reportLayoutVersion(peer.id, res.headers[HEADER_LAYOUT_VERSION]);
        resolve(res);
      });
      req.on('error', (err) => {
        for (const t of timers) if (t !== undefined) clearTimeout(t);
        reject(err);
      });
      if (body.kind === 'stream') {
        const source = body.data;
        source.on('error', (err) => fail(err));
        // If the exchange ends before the upload does (early answer, failure), free the source.
        req.once('close', () => {
          if (!source.readableEnded) source.destroy();
        });
        source.pipe(req);
      } else {
        req.end(body.kind === 'buffer' ? body.data : undefined);
      }
    });
  }

  /** Reads a bounded JSON body; throws RpcError for error statuses. Calls `done` in every case. */
  private async readJson(peer: RpcPeer, res: IncomingMessage, done: (failure?: FailureKind) => void): Promise<unknown> {
    const status = res.statusCode ?? 0;
    let buf: Buffer;
    try {
      buf = await collect(res, this.o.maxResponseBytes, () => new RpcError(502, 'ResponseTooLarge', `response over ${this.o.maxResponseBytes} bytes`, peer.id));
    } catch (err) {
      res.destroy();
      done(); // mapFailure below records the failure
      throw err instanceof RpcError ? err : this.mapFailure(peer, err);
    }
    done();
    let json: unknown;
    try {
      json = buf.length === 0 ? undefined : JSON.parse(buf.toString('utf8'));
    } catch {
      throw new RpcError(502, 'BadResponse', `peer sent invalid JSON (status ${status})`, peer.id);
    }
    if (status >= 400) {
      if (isRpcErrorBody(json)) throw new RpcError(status, json.error.code, json.error.message, peer.id);
      throw new RpcError(status, 'Unknown', `peer answered ${status}`, peer.id);
    }
    return json;
  }

  private mapFailure(peer: RpcPeer, err: unknown): Error {
    if (err instanceof RpcError || err instanceof PeerUnavailableError || err instanceof PeerBusyError) return err;
    if (err instanceof PeerTimeoutError) {
      this.recordFailure(peer, 'timeout', err.message);
      return err;
    }
    const e = err as NodeJS.ErrnoException;
    const message = `${peer.id} (${peer.address}): ${e?.message ?? String(err)}`;
    const refused = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'].includes(e?.code ?? '');
    this.recordFailure(peer, refused ? 'refused' : 'error', e?.code ?? e?.message ?? 'error');
    return new PeerUnavailableError(peer.id, message, { cause: err });
  }

  private recordFailure(peer: RpcPeer, kind: FailureKind, message: string): void {
    if (this.health.recordFailure(peer.id, kind, message)) {
      this.log.warn('peer marked down', { peerId: peer.id, address: peer.address, kind });
      this.scheduleProbe(peer);
    }
  }

  /** While a peer is down, one signed ping per probe interval; a success marks it up. */
  private scheduleProbe(peer: RpcPeer): void {
    if (this.closed || this.probeTimers.has(peer.id)) return;
    const delayMs = Math.max(1, this.health.msUntilProbe(peer.id));
    const timer = setTimeout(async () => {
      if (this.closed) return;
      if (this.health.isUp(peer.id)) {
        this.probeTimers.delete(peer.id);
        return;
      }
      let ok = false;
      if (this.health.takeProbe(peer.id)) {
        ok = await this.ping(peer, Math.min(this.o.connectTimeoutMs, this.health.probeIntervalMs));
        if (ok) {
          this.health.recordSuccess(peer.id);
          this.log.info('peer back up', { peerId: peer.id, address: peer.address });
        }
      }
      this.probeTimers.delete(peer.id);
      if (!ok) this.scheduleProbe(peer);
    }, delayMs);
    timer.unref();
    this.probeTimers.set(peer.id, timer);
  }

  private reportLayoutVersion(peerId: string, header: string | string[] | undefined): void {
    if (this.onLayoutVersion === undefined || typeof header !== 'string' || !/^\d{1,15}$/.test(header)) return;
    try {
      this.onLayoutVersion(peerId, Number(header));
    } catch (err) {
      this.log.warn('layout version callback failed', { peerId, err: String(err) });
    }
  }

  private conn(peer: RpcPeer): PeerConn {
    const existing = this.peers.get(peer.id);
    if (existing !== undefined && existing.address === peer.address) return existing;
    if (existing !== undefined) existing.agent.destroy(); // the peer moved: old sockets are useless
    else if (this.peers.size >= MAX_PEERS) throw new RangeError(`more than ${MAX_PEERS} peers`);
    const m = /^(.+):(\d{1,5})$/.exec(peer.address);
    if (m === null) throw new RangeError(`peer address must be host:port, got ${peer.address}`);
    const conn: PeerConn = {
      address: peer.address,
      host: m[1].replace(/^\[(.*)\]$/, '$1'),
      port: Number(m[2]),
      agent: new http.Agent({
        keepAlive: true, maxSockets: this.o.maxConnectionsPerPeer, maxFreeSockets: this.o.maxConnectionsPerPeer,
        timeout: this.o.keepAliveMs, scheduling: 'lifo',
      }),
      gate: existing?.gate ?? new Gate(this.o.maxInFlightPerPeer, this.o.maxQueuedPerPeer),
    };
    this.peers.set(peer.id, conn);
    return conn;
  }
}
