import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import type { BucketRecord, ObjectVersion } from '../meta/types';
import { readSmallBody } from './body';
import { validateTags } from './headers';
import { parseXml, xmlChild, xmlList, xmlText, XmlObject } from './xml';

/** Object tagging (?tagging on a key, up to 10 tags) and bucket tagging (?tagging on a bucket, up to 50). */

export const MAX_BUCKET_TAGS = 50;
/** 50 tags of 128 + 256 characters fit well below this; anything larger is not a tagging document. */
export const MAX_TAGGING_XML_BYTES = 64 * 1024;

/** `<Tagging><TagSet><Tag><Key/><Value/></Tag>…</TagSet></Tagging>` → pairs in document order. */
export function parseTagging(doc: XmlObject): [string, string][] {
  const set = xmlChild(doc, 'TagSet');
  if (!set) throw new S3Error('MalformedXML');
  return xmlList(set, 'Tag').map((t) => {
    const k = xmlText(t, 'Key');
    const v = xmlText(t, 'Value');
    if (k === undefined || v === undefined) throw new S3Error('MalformedXML');
    return [k, v];
  });
}

export function taggingXml(tags: [string, string][]): XmlObject {
  return { TagSet: tags.length === 0 ? {} : { Tag: tags.map(([k, v]) => ({ Key: k, Value: v })) } };
}

/** The aws: prefix is S3's own; a requester may not set such tags. */
function refuseSystemTags(tags: [string, string][]): void {
  if (tags.some(([k]) => k.toLowerCase().startsWith('aws:'))) throw new S3Error('InvalidTag', 'System tags cannot be added/updated by requester');
}

export function validateObjectTags(tags: [string, string][]): void {
  validateTags(tags);
  refuseSystemTags(tags);
}

/** Buckets take 50 tags where objects take 10, so the count is checked here and each tag on its own. */
export function validateBucketTags(tags: [string, string][]): void {
  if (tags.length > MAX_BUCKET_TAGS) throw new S3Error('InvalidTag', `Bucket tag count cannot be greater than ${MAX_BUCKET_TAGS}`);
  const seen = new Set<string>();
  for (const t of tags) {
    validateTags([t]);
    if (seen.has(t[0])) throw new S3Error('InvalidTag', 'Cannot provide multiple Tags with the same key');
    seen.add(t[0]);
  }
  refuseSystemTags(tags);
}

async function readTags(ctx: S3Context): Promise<[string, string][]> {
  return parseTagging(parseXml((await readSmallBody(ctx, MAX_TAGGING_XML_BYTES)).toString('utf8'), 'Tagging'));
}

/** Object tagging answers name the version they touched, as GET and PUT do. */
function versionHeader(b: BucketRecord, v: ObjectVersion): Record<string, string> {
  return b.versioning !== 'Unversioned' || v.versionId !== 'null' ? { 'x-amz-version-id': v.versionId } : {};
}

export const getObjectTagging: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const v = ctx.svc.store.resolveVersion(b.name, ctx.requireKey(), ctx.query.get('versionId'));
  ctx.versionId = v.versionId;
  ctx.sendXml(200, 'Tagging', taggingXml(v.tags), versionHeader(b, v));
};

export const putObjectTagging: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const tags = await readTags(ctx);
  validateObjectTags(tags);
  const v = await ctx.svc.store.setObjectTags(b.name, key, ctx.query.get('versionId'), tags);
  ctx.versionId = v.versionId;
  ctx.sendEmpty(200, versionHeader(b, v));
};

export const deleteObjectTagging: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const v = await ctx.svc.store.setObjectTags(b.name, ctx.requireKey(), ctx.query.get('versionId'), []);
  ctx.versionId = v.versionId;
  ctx.sendEmpty(204, versionHeader(b, v));
};

export const getBucketTagging: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  if (!b.tags || b.tags.length === 0) throw new S3Error('NoSuchTagSet', undefined, { BucketName: b.name });
  ctx.sendXml(200, 'Tagging', taggingXml(b.tags));
};

export const putBucketTagging: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const tags = await readTags(ctx);
  validateBucketTags(tags);
  // An empty set is stored as none, so that it reads back as NoSuchTagSet like a deleted one.
  await ctx.svc.store.setBucketTags(b.name, tags.length > 0 ? tags : undefined);
  ctx.sendEmpty(204);
};

export const deleteBucketTagging: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  await ctx.svc.store.setBucketTags(b.name, undefined);
  ctx.sendEmpty(204);
};
