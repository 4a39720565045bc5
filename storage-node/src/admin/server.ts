import crypto from 'node:crypto';
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../util/logger';
import type { NodeMetrics } from './metrics';

export interface AdminRoute {
  method: string;
  /** A string matches the whole path; a RegExp is matched as given (anchor it), its match handed to the handler. */
  path: string | RegExp;
  /** Requires `Authorization: Bearer <token>`. */
  auth: boolean;
  handler: (req: IncomingMessage, res: ServerResponse, match: RegExpMatchArray | null) => Promise<void>;
}

export interface AdminServerOptions {
  host: string;
  port: number;
  /** Bearer token for `auth: true` routes. Without one, those routes refuse everyone. */
  token?: string;
  metrics: NodeMetrics;
  isReady: () => { ready: boolean; reason?: string };
  logger: Logger;
  routes?: AdminRoute[];
}

export interface AdminServer {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

/** A refusal with its HTTP status, rendered as {"error":{"code","message"}}. Handlers throw it. */
export class AdminError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'AdminError';
    if (!Number.isInteger(status) || status < 400 || status > 599) throw new Error(`AdminError status must be 4xx or 5xx, got ${status}`);
  }
}

export const MAX_JSON_BODY_BYTES = 1024 * 1024;
/** An over-large body up to this size is read and dropped so that the client sees the 413; beyond, the connection is cut. */
const DRAIN_LIMIT_BYTES = 8 * 1024 * 1024;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
const IDLE_SOCKET_TIMEOUT_MS = 60_000;
const MAX_HEADER_BYTES = 16 * 1024;
const MAX_CONNECTIONS = 256;
const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** Reads a JSON request body of at most `maxBytes`. Throws AdminError 413 when larger, 400 when not JSON. */
export function readJsonBody(req: IncomingMessage, maxBytes = MAX_JSON_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > maxBytes) return Promise.reject(tooLarge(maxBytes));
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) return Promise.reject(new AdminError(400, 'BadRequest', 'expected Content-Type application/json'));
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      got += chunk.length;
      if (got > maxBytes) {
        // Stop keeping bytes; the stream keeps flowing so that the rest can be drained by the edge.
        cleanup();
        reject(tooLarge(maxBytes));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      if (got === 0) return reject(new AdminError(400, 'BadRequest', 'a JSON body is required'));
      try {
        resolve(JSON.parse(Buffer.concat(parts, got).toString('utf8')));
      } catch {
        reject(new AdminError(400, 'InvalidJson', 'the request body is not valid JSON'));
      }
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(maxBytes: number): AdminError {
  return new AdminError(413, 'BodyTooLarge', `the request body exceeds ${maxBytes} bytes`);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** Constant-time check of an Authorization header against the token (hashed first so lengths match). */
function authorized(header: string | undefined, token: string | undefined): boolean {
  if (token === undefined || token.length === 0 || header === undefined) return false;
  const m = /^Bearer ([^\s]+)$/i.exec(header.trim());
  if (!m) return false;
  const a = crypto.createHash('sha256').update(m[1]).digest();
  const b = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(a, b);
}

function builtinRoutes(opts: AdminServerOptions): AdminRoute[] {
  return [
    { method: 'GET', path: '/health', auth: false, handler: async (_req, res) => sendJson(res, 200, { status: 'ok' }) },
    {
      method: 'GET', path: '/ready', auth: false, handler: async (_req, res) => {
        const r = opts.isReady();
        if (r.ready) sendJson(res, 200, { status: 'ready' });
        else sendJson(res, 503, { status: 'not ready', reason: r.reason ?? 'unknown' });
      },
    },
    {
      method: 'GET', path: '/metrics', auth: false, handler: async (_req, res) => {
        const m = await opts.metrics.render();
        res.writeHead(200, { 'content-type': m.contentType, 'content-length': Buffer.byteLength(m.body), 'cache-control': 'no-store' });
        res.end(m.body);
      },
    },
  ];
}

interface Found {
  route?: AdminRoute;
  match: RegExpMatchArray | null;
  allowed: string[];
}

function findRoute(routes: AdminRoute[], method: string, pathname: string): Found {
  const allowed: string[] = [];
  for (const r of routes) {
    const match = typeof r.path === 'string' ? (r.path === pathname ? null : undefined) : pathname.match(r.path) ?? undefined;
    if (match === undefined) continue;
    if (r.method === method) return { route: r, match, allowed };
    allowed.push(r.method);
  }
  return { match: null, allowed };
}

/** Reads and drops what is left of a request body, up to a limit. True when the body was fully read. */
function discardBody(req: IncomingMessage, limitBytes: number): Promise<boolean> {
  if (req.readableEnded || req.complete) return Promise.resolve(true);
  return new Promise((resolve) => {
    let got = 0;
    const done = (ok: boolean): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onEnd);
      resolve(ok);
    };
    const onData = (c: Buffer): void => {
      got += c.length;
      if (got > limitBytes) done(false);
    };
    const onEnd = (): void => done(req.complete);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onEnd);
    req.resume();
  });
}

async function sendError(req: IncomingMessage, res: ServerResponse, e: AdminError): Promise<void> {
  // Answer after the body is read (or cut the connection), so that the client is not reset mid-upload.
  if (!(await discardBody(req, DRAIN_LIMIT_BYTES))) res.setHeader('connection', 'close');
  if (res.headersSent || res.destroyed) return;
  for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
  sendJson(res, e.status, { error: { code: e.code, message: e.message } });
}

/** The admin, health and metrics listener of a node, on its own port. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const routes = [...builtinRoutes(opts), ...(opts.routes ?? [])];
  const log = opts.logger;
  const server = http.createServer({
    maxHeaderSize: MAX_HEADER_BYTES,
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
  });
  server.setTimeout(IDLE_SOCKET_TIMEOUT_MS, (socket: Socket) => socket.destroy());
  server.maxConnections = MAX_CONNECTIONS;

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const startNs = process.hrtime.bigint();
    const incomingId = req.headers['x-request-id'];
    const requestId = typeof incomingId === 'string' && REQUEST_ID_RE.test(incomingId) ? incomingId : crypto.randomBytes(8).toString('hex');
    res.setHeader('x-request-id', requestId);
    const method = req.method ?? 'GET';
    let pathname = '/';
    res.on('finish', () => {
      const durationMs = Number(process.hrtime.bigint() - startNs) / 1e6;
      log.debug('admin request', { requestId, method, path: pathname, status: res.statusCode, durationMs: Math.round(durationMs * 1000) / 1000 });
    });
    try {
      pathname = new URL(req.url ?? '/', 'http://admin.invalid').pathname;
      const found = findRoute(routes, method, pathname);
      if (!found.route) {
        if (found.allowed.length > 0) throw new AdminError(405, 'MethodNotAllowed', `${method} is not allowed on ${pathname}`, { allow: found.allowed.join(', ') });
        throw new AdminError(404, 'NotFound', `no route for ${pathname}`);
      }
      if (found.route.auth && !authorized(req.headers.authorization, opts.token)) {
        throw new AdminError(401, 'Unauthorized', opts.token ? 'a valid bearer token is required' : 'no admin token is configured on this node');
      }
      await found.route.handler(req, res, found.match);
      if (!res.headersSent) throw new Error('admin handler returned without answering');
    } catch (e) {
      if (res.headersSent) {
        log.error('admin handler failed after answering', { requestId, path: pathname, error: (e as Error).message });
        res.destroy();
        return;
      }
      if (e instanceof AdminError) {
        await sendError(req, res, e);
      } else {
        // Internal details stay in the log; the client gets a request id to quote.
        log.error('admin handler failed', { requestId, path: pathname, error: (e as Error).message });
        await sendError(req, res, new AdminError(500, 'InternalError', 'internal error; see the node log for this request id'));
      }
    }
  };

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = JSON.stringify({ error: { code: status === 431 ? 'HeadersTooLarge' : 'BadRequest', message: 'the request could not be parsed' } });
    const requestId = crypto.randomBytes(8).toString('hex');
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\nx-request-id: ${requestId}\r\n\r\n${body}`);
    log.debug('admin request unparsable', { requestId, error: err.code });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;

  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    close: () => {
      // Admin requests are short; waiting on keep-alive sockets would only delay a node's stop.
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
