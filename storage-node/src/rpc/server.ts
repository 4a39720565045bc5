import { createHash } from 'node:crypto';
import http, { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Logger, silentLogger } from '../util/logger';
import {
  GridSecrets, HEADER_LAYOUT_VERSION, MAX_CLOCK_SKEW_MS, STREAMING_BODY, assertGridSecrets, digestsEqual, verifyRequest,
} from './auth';
import { collect } from './body';
import { RpcError } from './errors';

/** Built-in route answered by every RPC server; the client's health probes use it. */
export const PING_PATH = '/_rpc/ping';
export const MAX_JSON_BYTES = 8 * 1024 * 1024;
/** Request bodies up to this size are read and dropped after an early answer; larger ones close the connection. */
const DRAIN_BODY_MAX_BYTES = 64 * 1024;

export interface RpcRequest {
  /** The verified sender node id. */
  peerId: string;
  requestId: number;
  method: string;
  /** The path without query string. */
  path: string;
  query: URLSearchParams;
  /** Capture groups when the route path is a RegExp. */
  params: string[];
  headers: IncomingHttpHeaders;
  /** Parsed JSON body (undefined when empty); always undefined on stream routes. */
  body: unknown;
  /** The raw request body, on `stream: true` routes only; the handler must consume or destroy it. */
  stream?: Readable;
  /** Aborted when the handler times out, the caller goes away or the server stops. */
  signal: AbortSignal;
}

export interface RpcReply {
  /** Sends a JSON body (default status 200). */
  json(value: unknown, status?: number): void;
  /** Streams a body (a download); resolves when it has been written or rejects if it failed. */
  stream(body: Readable, opts?: { status?: number; headers?: Record<string, string> }): Promise<void>;
  readonly sent: boolean;
}

export interface RpcRoute {
  method: string;
  path: string | RegExp;
  /** The handler receives the request body as a stream instead of parsed JSON. */
  stream?: boolean;
  /**
   * Deadline for the answer to start; default handlerTimeoutMs, none for stream routes (the socket
   * idle timeout bounds those). A streamed reply, once started, is bounded by the idle timeout only.
   */
  timeoutMs?: number;
  /** Returns the JSON to send (200), or undefined after replying itself (or for 204). */
  handler(req: RpcRequest, res: RpcReply): unknown | Promise<unknown>;
}

export interface RpcServerOptions {
  host: string;
  port: number;
  secrets: GridSecrets;
  nodeId: string;
  logger?: Logger;
  routes: RpcRoute[];
  /** Requests handled at once; more get 503 Busy. */
  maxConcurrent?: number;
  /** Gossip hook: the local layout version, sent on every response. */
  layoutVersion?: () => number;
  maxJsonBytes?: number;
  handlerTimeoutMs?: number;
  /** A socket with no traffic for this long is closed. */
  idleTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** Upper bound on receiving one request (streamed uploads included). */
  requestTimeoutMs?: number;
  maxClockSkewMs?: number;
  maxConnections?: number;
}

export interface RpcServer {
  /** `host:port` as peers should dial it. */
  readonly address: string;
  readonly port: number;
  setSecrets(secrets: GridSecrets): void;
  inFlight(): number;
  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts the rest. */
  close(deadlineMs?: number): Promise<void>;
}

interface Ctx {
  o: Required<Omit<RpcServerOptions, 'logger' | 'layoutVersion' | 'secrets'>>;
  log: Logger;
  secrets: GridSecrets;
  layoutVersion?: () => number;
  inFlight: number;
  closing: boolean;
  nextRequestId: number;
  drained: (() => void)[];
  aborters: Set<LazyAbort>;
}

export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  assertGridSecrets(opts.secrets);
  const o = {
    maxConcurrent: 64, maxJsonBytes: MAX_JSON_BYTES, handlerTimeoutMs: 30_000, idleTimeoutMs: 60_000,
    headersTimeoutMs: 10_000, requestTimeoutMs: 15 * 60_000, maxClockSkewMs: MAX_CLOCK_SKEW_MS, maxConnections: 1024,
    ...opts,
  };
  if (!(o.maxConcurrent >= 1) || !(o.maxJsonBytes >= 1)) throw new RangeError('invalid RPC server bounds');
  const ctx: Ctx = {
    o, log: opts.logger ?? silentLogger(), secrets: opts.secrets, layoutVersion: opts.layoutVersion,
    inFlight: 0, closing: false, nextRequestId: 1, drained: [], aborters: new Set(),
  };
  const server = http.createServer((req, res) => handle(ctx, req, res));
  server.headersTimeout = o.headersTimeoutMs;
  server.requestTimeout = o.requestTimeoutMs;
  server.timeout = o.idleTimeoutMs;
  // Longer than the client's idle-socket time, so the client always closes an idle socket first
  // and never sends a request on one the server is closing.
  server.keepAliveTimeout = 65_000;
  server.maxConnections = o.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  ctx.log.info('rpc server listening', { host: o.host, port, nodeId: o.nodeId });
  return {
    address: `${o.host}:${port}`,
    port,
    setSecrets(s) {
      assertGridSecrets(s);
      ctx.secrets = s;
    },
    inFlight: () => ctx.inFlight,
    close: (deadlineMs = 10_000) => closeServer(ctx, server, deadlineMs),
  };
}

async function closeServer(ctx: Ctx, server: http.Server, deadlineMs: number): Promise<void> {
  if (ctx.closing) return;
  ctx.closing = true;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  if (ctx.inFlight > 0) {
    let timer: NodeJS.Timeout | undefined;
    const drained = new Promise<boolean>((resolve) => ctx.drained.push(() => resolve(true)));
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), deadlineMs)));
    const ok = await Promise.race([drained, expired]);
    clearTimeout(timer);
    if (!ok) {
      ctx.log.warn('rpc server close deadline passed, cutting requests', { inFlight: ctx.inFlight });
      for (const a of ctx.aborters) a.abort(new Error('server closing'));
    }
  }
  server.closeAllConnections();
  await closed;
  ctx.log.info('rpc server closed', { nodeId: ctx.o.nodeId });
}

function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): void {
  const requestId = ctx.nextRequestId++;
  try {
    if (ctx.layoutVersion) res.setHeader(HEADER_LAYOUT_VERSION, String(ctx.layoutVersion()));
  } catch (err) {
    ctx.log.warn('layout version callback failed', { err: String(err) });
  }
  if (ctx.closing) {
    res.setHeader('connection', 'close');
    return sendError(res, req, new RpcError(503, 'ShuttingDown', 'node is shutting down'));
  }
  if (ctx.inFlight >= ctx.o.maxConcurrent) {
    return sendError(res, req, new RpcError(503, 'Busy', `more than ${ctx.o.maxConcurrent} requests in flight`));
  }
  ctx.inFlight += 1;
  const aborter = new LazyAbort();
  ctx.aborters.add(aborter);
  const startMs = Date.now();
  res.once('close', () => {
    ctx.inFlight -= 1;
    ctx.aborters.delete(aborter);
    if (!res.writableFinished) aborter.abort(new Error('connection closed'));
    if (ctx.log.isDebugEnabled()) ctx.log.debug('rpc request', { requestId, method: req.method, url: req.url, status: res.statusCode, durationMs: Date.now() - startMs });
    if (ctx.inFlight === 0) for (const d of ctx.drained.splice(0)) d();
  });
  if (ctx.closing) res.setHeader('connection', 'close');
  dispatch(ctx, req, res, requestId, aborter).catch((err) => {
    if (!(err instanceof RpcError)) ctx.log.error('rpc handler failed', { requestId, url: req.url, err: String(err) });
    if (res.headersSent) res.destroy();
    else sendError(res, req, err instanceof RpcError ? err : new RpcError(500, 'InternalError', 'internal error'));
  });
}

async function dispatch(ctx: Ctx, req: IncomingMessage, res: ServerResponse, requestId: number, aborter: LazyAbort): Promise<void> {
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const auth = verifyRequest(ctx.secrets, method, url, req.headers, Date.now(), ctx.o.maxClockSkewMs);
  if (!auth.ok) {
    ctx.log.warn('rpc request refused', { requestId, reason: auth.reason, remote: req.socket.remoteAddress, url });
    throw new RpcError(401, 'Unauthorized', 'request is not signed by a member of this grid');
  }
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const found = path === PING_PATH ? pingRoute(ctx) : findRoute(ctx.o.routes, method, path);
  if (found === 'no-path') throw new RpcError(404, 'NoSuchRoute', `no route for ${path}`);
  if (found === 'no-method') throw new RpcError(405, 'MethodNotAllowed', `${method} not allowed on ${path}`);
  const { route, params } = found;
  let body: unknown;
  if (!route.stream) {
    if (auth.bodySha256 === STREAMING_BODY) throw new RpcError(401, 'Unauthorized', 'this route needs a signed body hash');
    const buf = await readBounded(req, ctx.o.maxJsonBytes);
    if (!digestsEqual(createHash('sha256').update(buf).digest('hex'), auth.bodySha256)) {
      throw new RpcError(401, 'Unauthorized', 'body does not match its signed hash');
    }
    body = parseJson(buf);
  }
  const rpcReq: RpcRequest = {
    peerId: auth.peerId, requestId, method, path, query, params, headers: req.headers, body,
    stream: route.stream ? req : undefined,
    get signal() {
      return aborter.signal;
    },
  };
  const reply = makeReply(req, res);
  const timeoutMs = route.timeoutMs ?? (route.stream ? undefined : ctx.o.handlerTimeoutMs);
  const result = await withDeadline(Promise.resolve(route.handler(rpcReq, reply)), timeoutMs, aborter, () => reply.sent);
  if (reply.sent) return;
  if (result === undefined) {
    res.statusCode = 204;
    finishEarly(req, res);
    res.end();
  } else {
    reply.json(result);
  }
}

/**
 * An AbortController made only when a handler asks for its signal: most handlers never do, and
 * building an AbortSignal costs a visible share of a small call.
 */
class LazyAbort {
  private controller?: AbortController;
  private reason?: Error;

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

function pingRoute(ctx: Ctx): { route: RpcRoute; params: string[] } {
  return { route: { method: 'GET', path: PING_PATH, handler: () => ({ nodeId: ctx.o.nodeId }) }, params: [] };
}

function findRoute(routes: RpcRoute[], method: string, path: string): { route: RpcRoute; params: string[] } | 'no-path' | 'no-method' {
  let pathMatched = false;
  for (const route of routes) {
    let params: string[] | undefined;
    if (typeof route.path === 'string') params = route.path === path ? [] : undefined;
    else {
      const m = route.path.exec(path);
      params = m && m[0] === path ? m.slice(1) : undefined;
    }
    if (params === undefined) continue;
    pathMatched = true;
    if (route.method.toUpperCase() === method) return { route, params };
  }
  return pathMatched ? 'no-method' : 'no-path';
}

/**
 * The handler deadline bounds the wait for an answer to start. A download that has started is
 * bounded by the socket idle timeout instead, so a large body on a slow link is not cut.
 */
async function withDeadline<T>(p: Promise<T>, timeoutMs: number | undefined, aborter: LazyAbort, started: () => boolean): Promise<T> {
  if (timeoutMs === undefined) return p;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      if (started()) return;
      aborter.abort(new Error('handler timeout'));
      reject(new RpcError(504, 'HandlerTimeout', `handler took more than ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function readBounded(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const tooLarge = () => new RpcError(413, 'BodyTooLarge', `body over ${maxBytes} bytes`);
  if (declared > maxBytes) return Promise.reject(tooLarge());
  return collect(req, maxBytes, tooLarge);
}

function parseJson(buf: Buffer): unknown {
  if (buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new RpcError(400, 'BadJson', 'body is not valid JSON');
  }
}

function makeReply(req: IncomingMessage, res: ServerResponse): RpcReply {
  let sent = false;
  return {
    get sent() {
      return sent;
    },
    json(value, status = 200) {
      if (sent) throw new Error('reply already sent');
      sent = true;
      sendJson(res, req, status, value);
    },
    async stream(body, opts = {}) {
      if (sent) throw new Error('reply already sent');
      sent = true;
      res.statusCode = opts.status ?? 200;
      res.setHeader('content-type', 'application/octet-stream');
      for (const [k, v] of Object.entries(opts.headers ?? {})) res.setHeader(k, v);
      finishEarly(req, res);
      await pipeline(body, res);
    },
  };
}

function sendJson(res: ServerResponse, req: IncomingMessage, status: number, value: unknown): void {
  const text = JSON.stringify(value ?? null);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(text));
  finishEarly(req, res);
  res.end(text);
}

function sendError(res: ServerResponse, req: IncomingMessage, err: RpcError): void {
  sendJson(res, req, err.status, { error: { code: err.code, message: err.message } });
}

/**
 * Answering before the request body was read: a small body is read and dropped by node:http so
 * the connection can be reused; a large or unknown-length one is not worth reading, so the
 * connection closes after the answer.
 */
function finishEarly(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete || res.headersSent) return;
  const declared = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (chunked || Number(declared ?? 0) > DRAIN_BODY_MAX_BYTES) res.setHeader('connection', 'close');
}
