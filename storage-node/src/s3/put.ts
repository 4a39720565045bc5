import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import { objectBody } from './body';
import { attributesFromHeaders, quoteEtag } from './headers';
import { LIMITS, WriteConditions } from '../model/store';
import { checksumHeaderName } from '../util/checksum';
import type { ObjectVersion } from '../meta/types';

export function writeConditions(ctx: S3Context): WriteConditions {
  const inm = ctx.header('if-none-match');
  if (inm !== undefined && inm.trim() !== '*') throw new S3Error('NotImplemented', 'If-None-Match on writes only supports *.');
  return { ifNoneMatchStar: inm !== undefined, ifMatch: ctx.header('if-match') };
}

/** Response headers of a successful write: ETag, version, checksum echo. */
export function writeResultHeaders(v: ObjectVersion, versioned: boolean): Record<string, string> {
  const h: Record<string, string> = { etag: quoteEtag(v.etag) };
  if (versioned) h['x-amz-version-id'] = v.versionId;
  if (v.checksum) {
    h[checksumHeaderName(v.checksum.algorithm)] = v.checksum.value;
    h['x-amz-checksum-type'] = v.checksum.type;
  }
  return h;
}

export const putObject: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const attrs = attributesFromHeaders(ctx);
  const cond = writeConditions(ctx);
  ctx.svc.store.checkWriteConditions(b.name, key, cond);
  const body = objectBody(ctx, { maxBytes: LIMITS.maxPutBytes });
  const v = await ctx.svc.store.putObject(b, key, ctx.accessKey, body, attrs, cond);
  ctx.versionId = v.versionId;
  ctx.sendEmpty(200, writeResultHeaders(v, b.versioning !== 'Unversioned'));
};
