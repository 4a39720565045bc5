import { once } from 'node:events';
import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import { objectHeaders, quoteEtag } from './headers';
import { etagMatches } from '../model/store';
import type { ObjectVersion } from '../meta/types';

const OVERRIDES: [string, string][] = [
  ['response-content-type', 'content-type'],
  ['response-content-language', 'content-language'],
  ['response-expires', 'expires'],
  ['response-cache-control', 'cache-control'],
  ['response-content-disposition', 'content-disposition'],
  ['response-content-encoding', 'content-encoding'],
];

function parseHttpDate(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? undefined : ms;
}

/** RFC 7232 evaluation as S3 does it; throws PreconditionFailed (412) or NotModified (304). */
export function checkReadConditions(ctx: S3Context, v: ObjectVersion): void {
  const lastModifiedS = Math.floor(v.lastModifiedMs / 1000);
  const ifMatch = ctx.header('if-match');
  const ifNoneMatch = ctx.header('if-none-match');
  const ifUnmodified = parseHttpDate(ctx.header('if-unmodified-since'));
  const ifModified = parseHttpDate(ctx.header('if-modified-since'));
  const notModifiedHeaders = { etag: quoteEtag(v.etag), 'last-modified': new Date(v.lastModifiedMs).toUTCString() };
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, v.etag)) throw new S3Error('PreconditionFailed', undefined, { Condition: 'If-Match' });
  } else if (ifUnmodified !== undefined && lastModifiedS > Math.floor(ifUnmodified / 1000)) {
    throw new S3Error('PreconditionFailed', undefined, { Condition: 'If-Unmodified-Since' });
  }
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, v.etag)) throw new S3Error('NotModified', undefined, {}, notModifiedHeaders);
  } else if (ifModified !== undefined && lastModifiedS <= Math.floor(ifModified / 1000)) {
    throw new S3Error('NotModified', undefined, {}, notModifiedHeaders);
  }
}

/** A single byte range "bytes=a-b", "bytes=a-" or "bytes=-n"; unparseable ranges are ignored as RFC 7233 says. */
export function parseRange(header: string | undefined, size: number): { start: number; endInclusive: number } | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) throw new S3Error('InvalidRange', undefined, { RangeRequested: header, ActualObjectSize: String(size) }, { 'content-range': `bytes */${size}` });
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size) throw new S3Error('InvalidRange', undefined, { RangeRequested: header, ActualObjectSize: String(size) }, { 'content-range': `bytes */${size}` });
  return { start, endInclusive: end };
}

function partRange(v: ObjectVersion, partNumber: number): { start: number; endInclusive: number } | undefined {
  if (!v.parts) {
    if (partNumber !== 1) throw new S3Error('InvalidRange', 'The requested partnumber is not satisfiable', {}, { 'content-range': `bytes */${v.size}` });
    return undefined;
  }
  if (partNumber > v.parts.length) throw new S3Error('InvalidRange', 'The requested partnumber is not satisfiable', {}, { 'content-range': `bytes */${v.size}` });
  let start = 0;
  for (let i = 0; i < partNumber - 1; i++) start += v.parts[i].size;
  return { start, endInclusive: start + v.parts[partNumber - 1].size - 1 };
}

async function serve(ctx: S3Context, withBody: boolean): Promise<void> {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const v = ctx.svc.store.resolveVersion(b.name, key, ctx.query.get('versionId'));
  ctx.versionId = v.versionId;
  checkReadConditions(ctx, v);
  const pn = ctx.query.get('partNumber');
  let range: { start: number; endInclusive: number } | undefined;
  if (pn !== undefined) {
    if (!/^\d{1,5}$/.test(pn) || Number(pn) < 1 || Number(pn) > 10000) throw new S3Error('InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive', { ArgumentName: 'partNumber', ArgumentValue: pn });
    if (ctx.header('range') !== undefined) throw new S3Error('InvalidRequest', 'Cannot specify both Range header and partNumber query parameter');
    range = partRange(v, Number(pn));
  } else {
    range = v.size === 0 ? undefined : parseRange(ctx.header('range'), v.size);
    if (v.size === 0 && ctx.header('range') !== undefined && /^bytes=\d*-\d*$/.test(ctx.header('range')!.trim())) {
      throw new S3Error('InvalidRange', undefined, { RangeRequested: ctx.header('range')!, ActualObjectSize: '0' }, { 'content-range': 'bytes */0' });
    }
  }
  const whole = range === undefined || (range.start === 0 && range.endInclusive === v.size - 1 && pn === undefined && ctx.header('range') === undefined);
  const headers = objectHeaders(v, { checksumMode: ctx.header('x-amz-checksum-mode')?.toUpperCase() === 'ENABLED' && whole, versioned: b.versioning !== 'Unversioned' });
  for (const [q, h] of OVERRIDES) {
    const o = ctx.query.get(q);
    if (o !== undefined) headers[h] = o;
  }
  const length = range ? range.endInclusive - range.start + 1 : v.size;
  headers['content-length'] = String(length);
  let status = 200;
  if (range && (ctx.header('range') !== undefined || (pn !== undefined && v.parts))) {
    status = 206;
    headers['content-range'] = `bytes ${range.start}-${range.endInclusive}/${v.size}`;
  }
  if (!withBody || length === 0) {
    ctx.res.writeHead(status, headers);
    ctx.res.end();
    return;
  }
  const body = ctx.svc.store.openObject(v, range);
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // The first chunk is read and verified before the status line, so a bad copy is still a clean error.
  let next: IteratorResult<Buffer>;
  try {
    next = await it.next();
  } catch (e) {
    body.destroy();
    ctx.svc.log.error('object read failed', { requestId: ctx.requestId, bucket: b.name, key, versionId: v.versionId, error: (e as Error).message });
    throw new S3Error('InternalError');
  }
  ctx.res.writeHead(status, headers);
  const closed = new Promise<void>((resolve) => ctx.res.once('close', resolve));
  try {
    while (!next.done) {
      ctx.bytesOut += next.value.length;
      if (!ctx.res.write(next.value)) {
        const drained = await Promise.race([once(ctx.res, 'drain').then(() => true), closed.then(() => false)]);
        if (!drained) break;
      }
      next = await it.next();
    }
    ctx.res.end();
  } catch (e) {
    // Headers are sent: a short body and a cut connection are what tells the client the read failed.
    ctx.errorCode = 'InternalError';
    ctx.svc.log.error('object read failed', { requestId: ctx.requestId, bucket: b.name, key, versionId: v.versionId, error: (e as Error).message });
    ctx.res.destroy();
  } finally {
    body.destroy();
  }
}

export const getObject: Handler = (ctx) => serve(ctx, true);
export const headObject: Handler = (ctx) => serve(ctx, false);
