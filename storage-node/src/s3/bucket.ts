import { S3Error } from './error';
import type { S3Context, Handler } from './context';
import type { Route } from './router';
import { readSmallBody } from './body';
import { parseXml, xmlText, isoDate, MAX_XML_BODY_BYTES } from './xml';

export const listBuckets: Handler = async (ctx) => {
  const buckets = ctx.svc.store.listBuckets(ctx.accessKey);
  ctx.sendXml(200, 'ListAllMyBucketsResult', {
    Owner: { ID: ctx.accessKey, DisplayName: ctx.accessKey },
    Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: isoDate(b.createdMs), BucketRegion: b.region })) },
  });
};

export const createBucket: Handler = async (ctx) => {
  const name = ctx.bucket!;
  let region = ctx.svc.region;
  const body = await readSmallBody(ctx, MAX_XML_BODY_BYTES);
  if (body.length > 0) {
    const doc = parseXml(body.toString('utf8'), 'CreateBucketConfiguration');
    const loc = xmlText(doc, 'LocationConstraint');
    if (loc !== undefined && loc !== '' && loc !== ctx.svc.region) {
      throw new S3Error('InvalidArgument' as const, `The ${loc} location constraint is not served here; this endpoint is ${ctx.svc.region}.`, { ArgumentName: 'LocationConstraint', ArgumentValue: loc });
    }
    region = loc || ctx.svc.region;
  }
  const lockHeader = ctx.header('x-amz-bucket-object-lock-enabled');
  if (lockHeader !== undefined && !/^(true|false)$/i.test(lockHeader)) throw new S3Error('InvalidArgument', 'x-amz-bucket-object-lock-enabled must be true or false.');
  const acl = ctx.header('x-amz-acl');
  if (acl !== undefined && acl !== 'private') throw new S3Error('NotImplemented', `Canned ACL ${acl} is not supported: buckets are private to their owner.`);
  await ctx.svc.store.createBucket(name, ctx.accessKey, region, /^true$/i.test(lockHeader ?? ''));
  ctx.sendEmpty(200, { location: `/${name}` });
};

export const headBucket: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  ctx.sendEmpty(200, { 'x-amz-bucket-region': b.region });
};

export const deleteBucket: Handler = async (ctx) => {
  ctx.authorizedBucket();
  await ctx.svc.store.deleteBucket(ctx.bucket!);
  ctx.sendEmpty(204);
};

export const getLocation: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  // us-east-1 is reported as an empty constraint, as S3 does.
  ctx.sendXml(200, 'LocationConstraint', b.region === 'us-east-1' ? {} : { '#text': b.region });
};

export const getVersioning: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  ctx.sendXml(200, 'VersioningConfiguration', b.versioning === 'Unversioned' ? {} : { Status: b.versioning });
};

export const putVersioning: Handler = async (ctx) => {
  ctx.authorizedBucket();
  const doc = parseXml((await readSmallBody(ctx, MAX_XML_BODY_BYTES)).toString('utf8'), 'VersioningConfiguration');
  const status = xmlText(doc, 'Status');
  if (status !== 'Enabled' && status !== 'Suspended') throw new S3Error('MalformedXML', 'Status must be Enabled or Suspended.');
  const mfa = xmlText(doc, 'MfaDelete');
  if (mfa === 'Enabled') throw new S3Error('NotImplemented', 'MFA delete is not implemented.');
  await ctx.svc.store.setVersioning(ctx.bucket!, status);
  ctx.sendEmpty(200);
};

/** Buckets and objects are private to the owning key; the ACL reads as that, and only that can be set. */
export const getAcl: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  if (ctx.key !== undefined) ctx.svc.store.resolveVersion(b.name, ctx.key, ctx.query.get('versionId'));
  const owner = { ID: b.owner, DisplayName: b.owner };
  ctx.sendXml(200, 'AccessControlPolicy', {
    Owner: owner,
    AccessControlList: {
      Grant: {
        Grantee: { '@_xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance', '@_xsi:type': 'CanonicalUser', ...owner },
        Permission: 'FULL_CONTROL',
      },
    },
  });
};

export const putAcl: Handler = async (ctx) => {
  ctx.authorizedBucket();
  const acl = ctx.header('x-amz-acl');
  await readSmallBody(ctx, MAX_XML_BODY_BYTES);
  if (acl !== undefined && acl !== 'private') throw new S3Error('NotImplemented', 'Only the private ACL is supported.');
  ctx.sendEmpty(200);
};

const MISSING: Record<string, [import('./error').S3ErrorCode, string]> = {
  policy: ['NoSuchBucketPolicy', 'GetBucketPolicy'],
  cors: ['NoSuchCORSConfiguration', 'GetBucketCors'],
  lifecycle: ['NoSuchLifecycleConfiguration', 'GetBucketLifecycleConfiguration'],
  encryption: ['ServerSideEncryptionConfigurationNotFoundError', 'GetBucketEncryption'],
  ownershipControls: ['OwnershipControlsNotFoundError', 'GetBucketOwnershipControls'],
};

/** GET of a bucket configuration we do not keep: "not configured" where S3 has such an answer. */
export function missingConfig(sub: string): Route {
  const m = MISSING[sub];
  return {
    operation: m ? m[1] : `GetBucket:${sub}`,
    handler: async (ctx: S3Context) => {
      ctx.authorizedBucket();
      if (m) throw new S3Error(m[0], undefined, { BucketName: ctx.bucket! });
      throw new S3Error('NotImplemented', `GetBucket ${sub} is not implemented by Archipel.`);
    },
  };
}
