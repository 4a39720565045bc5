import http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../util/logger';
import type { AuditLog, AuditRecord } from '../audit/audit-log';
import type { NodeMetrics } from '../admin/metrics';
import { S3Context, S3Services } from './context';
import { S3Error, isS3Error } from './error';
import { route } from './router';
import { authenticate } from './auth/sigv4';
import { toXml } from './xml';
import { validateBucketName, validateKey } from './names';

export interface S3ServerOptions {
  host: string;
  port: number;
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConcurrentRequests: number;
  /** Allowed clock skew for signed requests. */
  maxSkewMs?: number;
}

export interface S3Server {
  port: number;
  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts what is left. */
  close(deadlineMs: number): Promise<void>;
}

/** Above this many unread body bytes, an early error closes the connection instead of draining it. */
const DRAIN_LIMIT_BYTES = 1024 * 1024;

export async function startS3Server(svc: S3Services, opts: S3ServerOptions, audit: AuditLog, metrics: NodeMetrics, log: Logger): Promise<S3Server> {
  let inflight = 0;
  const server = http.createServer({
    maxHeaderSize: opts.maxHeaderBytes,
    headersTimeout: opts.headersTimeoutMs,
    requestTimeout: opts.requestTimeoutMs,
    keepAliveTimeout: opts.keepAliveTimeoutMs,
  });

  const finish = (ctx: S3Context): void => {
    inflight--;
    const status = ctx.res.statusCode;
    const durationMs = ctx.elapsedMs();
    metrics.observeRequest(ctx.operation, status, durationMs, ctx.bytesIn, ctx.bytesOut);
    const rec: AuditRecord = {
      time: new Date(ctx.startMs).toISOString(),
      requestId: ctx.requestId,
      accessKey: ctx.auth?.accessKeyId ?? claimedAccessKey(ctx),
      sourceIp: ctx.req.socket.remoteAddress ?? '',
      operation: ctx.operation,
      bucket: ctx.bucket,
      key: ctx.key,
      versionId: ctx.versionId,
      status: ctx.res.writableFinished ? status : 499,
      errorCode: ctx.errorCode,
      bytesIn: ctx.bytesIn,
      bytesOut: ctx.bytesOut,
      durationMs: Math.round(durationMs * 1000) / 1000,
      userAgent: ctx.header('user-agent')?.slice(0, 256),
    };
    audit.append(rec);
    // A batch names many objects: each gets its own record, so "who deleted this key" has an answer.
    for (const o of ctx.batchOutcomes) {
      audit.append({ ...rec, operation: `${ctx.operation}.Object`, key: o.key, versionId: o.versionId, status: o.status, errorCode: o.errorCode, bytesIn: 0, bytesOut: 0 });
    }
    const line = { requestId: ctx.requestId, operation: ctx.operation, bucket: ctx.bucket, status: rec.status, durationMs: rec.durationMs, errorCode: ctx.errorCode };
    if (status >= 500) log.warn('s3 request failed', line);
    // Checked first: winston builds and formats the line before its level filter drops it.
    else if (log.isDebugEnabled()) log.debug('s3 request', line);
  };

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    inflight++;
    const ctx = new S3Context(req, res, svc);
    let done = false;
    const end = (): void => {
      if (!done) {
        done = true;
        finish(ctx);
      }
    };
    res.on('finish', end);
    res.on('close', end);
    void handle(ctx, inflight > opts.maxConcurrentRequests || audit.overloaded, opts.maxSkewMs, log);
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const e = tooLarge ? new S3Error('RequestHeaderSectionTooLarge', undefined, { MaxSizeAllowed: String(opts.maxHeaderBytes) }) : new S3Error('InvalidRequest', 'The request could not be parsed.');
    const requestId = `CLIENTERR${Date.now().toString(16).toUpperCase()}`;
    const body = toXml('Error', { Code: e.code, Message: e.message, ...e.extra, RequestId: requestId }, false);
    socket.end(`HTTP/1.1 ${e.httpStatus} ${http.STATUS_CODES[e.httpStatus]}\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nx-amz-request-id: ${requestId}\r\n\r\n${body}`);
    audit.append({
      time: new Date().toISOString(), requestId, sourceIp: socket.remoteAddress ?? '', operation: 'Unparsed',
      status: e.httpStatus, errorCode: e.code, bytesIn: 0, bytesOut: 0, durationMs: 0,
    });
    metrics.observeRequest('Unparsed', e.httpStatus, 0, 0, 0);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;

  return {
    port,
    close: async (deadlineMs: number) => {
      server.close();
      server.closeIdleConnections();
      const until = Date.now() + deadlineMs;
      while (inflight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      server.closeAllConnections();
    },
  };
}

/** The access key a request claims, for the audit record of a refused request. */
function claimedAccessKey(ctx: S3Context): string | undefined {
  const a = ctx.header('authorization') ?? ctx.query.get('X-Amz-Credential') ?? '';
  const m = /Credential=([^/,\s]+)\//.exec(a) ?? /^([^/]+)\//.exec(a);
  return m ? m[1].slice(0, 128) : undefined;
}

function parseTarget(ctx: S3Context): void {
  const url = ctx.req.url ?? '/';
  const qi = url.indexOf('?');
  ctx.rawPath = qi < 0 ? url : url.slice(0, qi);
  ctx.rawQuery = qi < 0 ? '' : url.slice(qi + 1);
  if (!ctx.rawPath.startsWith('/')) throw new S3Error('InvalidURI');
  for (const [k, v] of new URLSearchParams(ctx.rawQuery)) if (!ctx.query.has(k)) ctx.query.set(k, v);
  let path: string;
  try {
    // Raw bytes above 0x7F arrive as latin1 characters; re-read them as the UTF-8 they were.
    const raw = /[^\x00-\x7F]/.test(ctx.rawPath) ? Buffer.from(ctx.rawPath, 'latin1').toString('utf8') : ctx.rawPath;
    path = decodeURIComponent(raw);
  } catch {
    throw new S3Error('InvalidURI');
  }
  if (path.includes('\uFFFD') && !ctx.rawPath.toUpperCase().includes('%EF%BF%BD')) throw new S3Error('InvalidURI', 'The path is not valid UTF-8.');
  const host = (ctx.header('host') ?? '').replace(/:\d+$/, '').toLowerCase();
  const vhost = ctx.svc.domains.find((d) => host.endsWith(`.${d}`));
  if (vhost) {
    ctx.bucket = host.slice(0, host.length - vhost.length - 1);
    const key = path.slice(1);
    if (key !== '') ctx.key = key;
    return;
  }
  const rest = path.slice(1);
  if (rest === '') return;
  const slash = rest.indexOf('/');
  ctx.bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (key !== '') ctx.key = key;
}

async function handle(ctx: S3Context, overloaded: boolean, maxSkewMs: number | undefined, log: Logger): Promise<void> {
  try {
    parseTarget(ctx);
    const r = route(ctx.req.method ?? 'GET', ctx.bucket !== undefined, ctx.key !== undefined, ctx.query, ctx.req.headers);
    ctx.operation = r.operation;
    if (overloaded) throw new S3Error('SlowDown');
    await ctx.svc.whenAvailable?.();
    const unavailable = ctx.svc.unavailable?.();
    if (unavailable !== undefined) throw new S3Error('ServiceUnavailable', unavailable);
    const auth = authenticate(
      { method: ctx.req.method ?? 'GET', rawPath: ctx.rawPath, rawQuery: ctx.rawQuery, headers: ctx.req.headers },
      (id) => ctx.svc.store.secretFor(id),
      { nowMs: Date.now(), maxSkewMs },
    );
    if (!auth) throw new S3Error('AccessDenied', 'Anonymous access is not allowed.');
    ctx.auth = auth;
    if (ctx.bucket !== undefined) validateBucketName(ctx.bucket, r.operation === 'CreateBucket');
    if (ctx.key !== undefined) validateKey(ctx.key);
    ctx.versionId = ctx.query.get('versionId');
    await ctx.svc.store.prepare(r.operation, ctx.bucket, ctx.key, ctx.req.headers, ctx.query);
    await r.handler(ctx);
  } catch (err) {
    sendError(ctx, err, log);
  }
}

/** Grid refusals (too few copies or replicas reachable for the policy): the client may retry later. */
const UNAVAILABLE_ERRORS = new Set(['InsufficientCopiesError', 'QuorumError']);

function sendError(ctx: S3Context, err: unknown, log: Logger): void {
  const unavailable = err instanceof Error && UNAVAILABLE_ERRORS.has(err.name);
  if (unavailable) log.warn('request refused: grid cannot meet the policy', { requestId: ctx.requestId, operation: ctx.operation, error: (err as Error).message });
  const e = isS3Error(err) ? err : unavailable ? new S3Error('ServiceUnavailable', 'Not enough storage nodes are reachable to store this object as its replication policy requires; retry later.') : new S3Error('InternalError');
  if (!isS3Error(err) && !unavailable) log.error('internal error', { requestId: ctx.requestId, operation: ctx.operation, error: (err as Error)?.stack ?? String(err) });
  ctx.errorCode = e.code;
  const res = ctx.res;
  if (res.headersSent) {
    // The status line is gone: the only honest signal left is to cut the connection.
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { ...e.headers };
  const declared = Number(ctx.header('content-length') ?? 0);
  if (!ctx.bodyConsumed && (declared > DRAIN_LIMIT_BYTES || ctx.header('transfer-encoding') !== undefined)) headers.connection = 'close';
  if (ctx.bodyConsumed && !ctx.req.complete) headers.connection = 'close';
  if (ctx.req.method === 'HEAD' || e.httpStatus === 304) {
    res.writeHead(e.httpStatus, headers);
    res.end();
    return;
  }
  const body: Record<string, string> = { Code: e.code, Message: e.message };
  if (ctx.bucket !== undefined && !('BucketName' in e.extra) && e.code.startsWith('NoSuchBucket')) body.BucketName = ctx.bucket;
  Object.assign(body, e.extra);
  if (e.code === 'NoSuchKey' && ctx.key !== undefined && !('Key' in body)) body.Key = ctx.key;
  body.Resource = ctx.rawPath;
  body.RequestId = ctx.requestId;
  body.HostId = ctx.requestId;
  ctx.sendXml(e.httpStatus, 'Error', body, headers);
}
