import { S3Error } from './error';
import type { S3Context } from './context';
import type { ObjectVersion, RetentionMode } from '../meta/types';
import type { ObjectAttributes } from '../model/store';
import { checksumHeaderName } from '../util/checksum';

/** Stored as sent, returned on GET/HEAD. */
const STORED_HEADERS = ['content-encoding', 'content-disposition', 'cache-control', 'content-language', 'expires', 'x-amz-website-redirect-location'];
export const MAX_USER_META_BYTES = 2048;
export const MAX_TAGS = 10;

/** S3 rejects server-side encryption requests it cannot honour instead of silently storing plaintext. */
function refuseUnsupported(ctx: S3Context): void {
  const sse = ctx.header('x-amz-server-side-encryption');
  if (sse !== undefined && sse !== 'AES256') throw new S3Error('NotImplemented', `Server-side encryption ${sse} is not implemented.`);
  if (ctx.header('x-amz-server-side-encryption-customer-algorithm') !== undefined) throw new S3Error('NotImplemented', 'SSE-C is not implemented.');
  const sc = ctx.header('x-amz-storage-class');
  if (sc !== undefined && sc !== 'STANDARD') throw new S3Error('InvalidArgument' as const, `Storage class ${sc} is not supported; use STANDARD.`, { ArgumentName: 'x-amz-storage-class' });
}

export function parseTags(encoded: string): [string, string][] {
  const tags: [string, string][] = [];
  if (encoded === '') return tags;
  const seen = new Set<string>();
  for (const pair of encoded.split('&')) {
    const eq = pair.indexOf('=');
    let k: string;
    let v: string;
    try {
      k = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '));
      v = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '));
    } catch {
      throw new S3Error('InvalidArgument', 'The header x-amz-tagging is not a valid URL-encoded query string.');
    }
    tags.push([k, v]);
    if (seen.has(k)) throw new S3Error('InvalidTag', 'Cannot provide multiple Tags with the same key');
    seen.add(k);
  }
  validateTags(tags);
  return tags;
}

export function validateTags(tags: [string, string][]): void {
  if (tags.length > MAX_TAGS) throw new S3Error('InvalidTag', `Object tags cannot be greater than ${MAX_TAGS}`);
  const seen = new Set<string>();
  for (const [k, v] of tags) {
    if (k.length < 1 || k.length > 128) throw new S3Error('InvalidTag', 'The TagKey you have provided is invalid');
    if (v.length > 256) throw new S3Error('InvalidTag', 'The TagValue you have provided is invalid');
    if (seen.has(k)) throw new S3Error('InvalidTag', 'Cannot provide multiple Tags with the same key');
    seen.add(k);
  }
}

export function parseRetainUntil(s: string): number {
  const ms = Date.parse(s);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(s) || Number.isNaN(ms)) throw new S3Error('InvalidArgument', 'The retain until date is not a valid ISO 8601 date.');
  return ms;
}

export function parseMode(s: string): RetentionMode {
  if (s !== 'GOVERNANCE' && s !== 'COMPLIANCE') throw new S3Error('InvalidArgument', 'Unknown wormMode directive.', { ArgumentName: 'x-amz-object-lock-mode', ArgumentValue: s });
  return s;
}

/** Object attributes from request headers (PUT, CreateMultipartUpload, CopyObject with REPLACE). */
export function attributesFromHeaders(ctx: S3Context, opts: { metadata: boolean; tagging: boolean; lock: boolean } = { metadata: true, tagging: true, lock: true }): ObjectAttributes {
  refuseUnsupported(ctx);
  const attrs: ObjectAttributes = { headers: {}, userMeta: {}, tags: [] };
  if (opts.metadata) {
    const ct = ctx.header('content-type');
    if (ct !== undefined) attrs.contentType = ct;
    for (const h of STORED_HEADERS) {
      let v = ctx.header(h);
      if (v === undefined) continue;
      if (h === 'content-encoding') {
        v = v.split(',').map((s) => s.trim()).filter((s) => s !== 'aws-chunked' && s !== '').join(',');
        if (v === '') continue;
      }
      attrs.headers[h] = v;
    }
    let metaBytes = 0;
    for (const [name, value] of Object.entries(ctx.req.headers)) {
      if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
      const k = name.slice('x-amz-meta-'.length);
      const v = Array.isArray(value) ? value.join(',') : value;
      metaBytes += Buffer.byteLength(k) + Buffer.byteLength(v);
      attrs.userMeta[k] = v;
    }
    if (metaBytes > MAX_USER_META_BYTES) throw new S3Error('MetadataTooLarge', undefined, { Size: String(metaBytes), MaxSizeAllowed: String(MAX_USER_META_BYTES) });
  }
  if (opts.tagging) {
    const t = ctx.header('x-amz-tagging');
    if (t !== undefined) attrs.tags = parseTags(t);
  }
  if (opts.lock) {
    const mode = ctx.header('x-amz-object-lock-mode');
    const until = ctx.header('x-amz-object-lock-retain-until-date');
    if ((mode === undefined) !== (until === undefined)) {
      throw new S3Error('InvalidArgument', 'x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied.');
    }
    if (mode !== undefined && until !== undefined) attrs.retention = { mode: parseMode(mode), untilMs: parseRetainUntil(until) };
    const hold = ctx.header('x-amz-object-lock-legal-hold');
    if (hold !== undefined) {
      if (hold !== 'ON' && hold !== 'OFF') throw new S3Error('InvalidArgument', 'Legal Hold must be either of ON or OFF.', { ArgumentName: 'x-amz-object-lock-legal-hold' });
      attrs.legalHold = hold === 'ON';
    }
  }
  return attrs;
}

export function quoteEtag(etag: string): string {
  return `"${etag}"`;
}

/** Headers describing a stored version, as GET and HEAD return them. */
export function objectHeaders(v: ObjectVersion, opts: { checksumMode: boolean; versioned: boolean }): Record<string, string> {
  const h: Record<string, string> = {
    etag: quoteEtag(v.etag),
    'last-modified': new Date(v.lastModifiedMs).toUTCString(),
    'content-type': v.contentType ?? 'application/octet-stream',
    'accept-ranges': 'bytes',
  };
  for (const [k, val] of Object.entries(v.headers)) h[k] = val;
  for (const [k, val] of Object.entries(v.userMeta)) h[`x-amz-meta-${k}`] = val;
  if (opts.versioned || v.versionId !== 'null') h['x-amz-version-id'] = v.versionId;
  if (v.tags.length > 0) h['x-amz-tagging-count'] = String(v.tags.length);
  if (v.retention) {
    h['x-amz-object-lock-mode'] = v.retention.mode;
    h['x-amz-object-lock-retain-until-date'] = new Date(v.retention.untilMs).toISOString();
  }
  if (v.legalHold) h['x-amz-object-lock-legal-hold'] = 'ON';
  if (v.parts) h['x-amz-mp-parts-count'] = String(v.parts.length);
  if (opts.checksumMode && v.checksum) {
    h[checksumHeaderName(v.checksum.algorithm)] = v.checksum.value;
    h['x-amz-checksum-type'] = v.checksum.type;
  }
  return h;
}
