import { S3Error, isS3Error } from './error';
import type { Handler, S3Context } from './context';
import { readSmallBody } from './body';
import { parseXml, xmlList, xmlText, MAX_XML_BODY_BYTES, XmlObject } from './xml';
import { validateKey } from './names';
import type { BucketRecord } from '../meta/types';

const MAX_BATCH = 1000;

/** Bypassing GOVERNANCE retention is an object lock setting: only for keys with owner access to the bucket. */
function bypass(ctx: S3Context, b: BucketRecord): boolean {
  const on = ctx.header('x-amz-bypass-governance-retention')?.toLowerCase() === 'true';
  if (on) ctx.requireAccess(b, 'owner');
  return on;
}

export const deleteObject: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const r = await ctx.svc.store.deleteObject(b, key, ctx.query.get('versionId'), ctx.accessKey, bypass(ctx, b));
  const h: Record<string, string> = {};
  if (r.versionId !== undefined) h['x-amz-version-id'] = r.versionId;
  if (r.deleteMarker) h['x-amz-delete-marker'] = 'true';
  ctx.versionId = r.versionId;
  ctx.sendEmpty(204, h);
};

export const deleteObjects: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const doc = parseXml((await readSmallBody(ctx, MAX_XML_BODY_BYTES)).toString('utf8'), 'Delete');
  const quiet = xmlText(doc, 'Quiet') === 'true';
  const objects = xmlList(doc, 'Object');
  if (objects.length === 0 || objects.length > MAX_BATCH) throw new S3Error('MalformedXML', `Between 1 and ${MAX_BATCH} objects per request.`);
  const deleted: XmlObject[] = [];
  const errors: XmlObject[] = [];
  for (const o of objects) {
    const key = xmlText(o, 'Key');
    const versionId = xmlText(o, 'VersionId');
    if (key === undefined) throw new S3Error('MalformedXML', 'Each Object needs a Key.');
    try {
      validateKey(key);
      const r = await ctx.svc.store.deleteObject(b, key, versionId, ctx.accessKey, bypass(ctx, b));
      ctx.batchOutcomes.push({ key, versionId: r.versionId, status: 204 });
      if (!quiet) {
        const d: XmlObject = { Key: key };
        if (versionId !== undefined) d.VersionId = versionId;
        if (r.deleteMarker) {
          d.DeleteMarker = true;
          d.DeleteMarkerVersionId = r.versionId;
        }
        deleted.push(d);
      }
    } catch (e) {
      const err = isS3Error(e) ? e : new S3Error('InternalError');
      if (!isS3Error(e)) ctx.svc.log.error('batch delete failed', { requestId: ctx.requestId, key, error: (e as Error).message });
      ctx.batchOutcomes.push({ key, versionId, status: err.httpStatus, errorCode: err.code });
      errors.push({ Key: key, VersionId: versionId, Code: err.code, Message: err.message });
    }
  }
  ctx.sendXml(200, 'DeleteResult', { Deleted: deleted, Error: errors });
};
