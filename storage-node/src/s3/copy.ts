import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import { attributesFromHeaders, quoteEtag } from './headers';
import { writeConditions } from './put';
import { resolveCopySource, bodyFromVersion } from './copy-source';
import { isoDate, XmlObject } from './xml';
import type { ObjectAttributes } from '../model/store';
import type { ObjectVersion } from '../meta/types';
import { ChecksumAlgorithm, CHECKSUM_ALGORITHMS, parseChecksumAlgorithm } from '../util/checksum';

/**
 * CopyObject: a new version of the destination made from a stored version's bytes, streamed through the
 * store like any upload (never held whole), with metadata and tags copied or replaced as the directives say.
 */

/** S3's bound on a single-request copy; larger objects are copied with UploadPartCopy. */
export const MAX_COPY_SOURCE_BYTES = 5 * 1024 ** 3;

export type Directive = 'COPY' | 'REPLACE';

/** The header is kept apart from the stored metadata: S3 never copies it, the request must name it again. */
const REDIRECT_HEADER = 'x-amz-website-redirect-location';

export function parseDirective(value: string | undefined, kind: 'metadata' | 'tagging'): Directive {
  if (value === undefined) return 'COPY';
  if (value === 'COPY' || value === 'REPLACE') return value;
  throw new S3Error('InvalidArgument', `Unknown ${kind} directive.`, { ArgumentName: `x-amz-${kind}-directive`, ArgumentValue: value.slice(0, 64) });
}

/** x-amz-checksum-algorithm: what the new object's checksum is computed with; absent → the source's algorithm. */
export function parseCopyChecksumAlgorithm(value: string | undefined): ChecksumAlgorithm | undefined {
  if (value === undefined) return undefined;
  const a = parseChecksumAlgorithm(value);
  if (!a) throw new S3Error('InvalidRequest', `Checksum algorithm provided is unsupported. Please try again with any of the valid types: [${CHECKSUM_ALGORITHMS.join(', ')}]`);
  return a;
}

export interface CopyRequest {
  metadata: Directive;
  tagging: Directive;
  /** Attributes read from this request's headers (metadata and tags only where the directive is REPLACE). */
  fromRequest: ObjectAttributes;
  /** x-amz-website-redirect-location of this request, if any. */
  redirect?: string;
  storageClass?: string;
  sse?: string;
  checksumAlgorithm?: ChecksumAlgorithm;
}

/** The new version's attributes: source or request per directive; lock settings only ever from the request. */
export function copyAttributes(src: ObjectVersion, r: CopyRequest): ObjectAttributes {
  const attrs: ObjectAttributes = { headers: {}, userMeta: {}, tags: [] };
  if (r.metadata === 'REPLACE') {
    attrs.contentType = r.fromRequest.contentType;
    attrs.headers = { ...r.fromRequest.headers };
    attrs.userMeta = { ...r.fromRequest.userMeta };
  } else {
    attrs.contentType = src.contentType;
    for (const [k, v] of Object.entries(src.headers)) if (k !== REDIRECT_HEADER) attrs.headers[k] = v;
    if (r.redirect !== undefined) attrs.headers[REDIRECT_HEADER] = r.redirect;
    attrs.userMeta = { ...src.userMeta };
  }
  attrs.tags = r.tagging === 'REPLACE' ? [...r.fromRequest.tags] : src.tags.map(([k, v]) => [k, v] as [string, string]);
  // Retention and legal hold are never inherited from the source: the destination bucket's default applies.
  if (r.fromRequest.retention) attrs.retention = { ...r.fromRequest.retention };
  if (r.fromRequest.legalHold !== undefined) attrs.legalHold = r.fromRequest.legalHold;
  return attrs;
}

/** S3 refuses a copy of the current version onto itself that would change nothing it lets a copy change. */
export function isUnchangedSelfCopy(sameObject: boolean, src: ObjectVersion, r: CopyRequest): boolean {
  if (!sameObject) return false;
  const changes =
    r.metadata === 'REPLACE' || r.tagging === 'REPLACE' ||
    r.storageClass !== undefined || r.redirect !== undefined || r.sse !== undefined ||
    (r.checksumAlgorithm !== undefined && r.checksumAlgorithm !== src.checksum?.algorithm);
  return !changes;
}

export function copyResultXml(v: ObjectVersion): XmlObject {
  const out: XmlObject = { ETag: quoteEtag(v.etag), LastModified: isoDate(v.lastModifiedMs) };
  if (v.checksum) {
    out.ChecksumType = v.checksum.type;
    out[`Checksum${v.checksum.algorithm}`] = v.checksum.value;
  }
  return out;
}

function copyRequest(ctx: S3Context): CopyRequest {
  const metadata = parseDirective(ctx.header('x-amz-metadata-directive'), 'metadata');
  const tagging = parseDirective(ctx.header('x-amz-tagging-directive'), 'tagging');
  return {
    metadata,
    tagging,
    fromRequest: attributesFromHeaders(ctx, { metadata: metadata === 'REPLACE', tagging: tagging === 'REPLACE', lock: true }),
    redirect: ctx.header(REDIRECT_HEADER),
    storageClass: ctx.header('x-amz-storage-class'),
    sse: ctx.header('x-amz-server-side-encryption'),
    checksumAlgorithm: parseCopyChecksumAlgorithm(ctx.header('x-amz-checksum-algorithm')),
  };
}

export const copyObject: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const r = copyRequest(ctx);
  const cond = writeConditions(ctx);
  const { bucket: srcBucket, version: src } = resolveCopySource(ctx);
  if (src.size > MAX_COPY_SOURCE_BYTES) {
    throw new S3Error('InvalidRequest', `The specified copy source is larger than the maximum allowable size for a copy source: ${MAX_COPY_SOURCE_BYTES}`);
  }
  if (isUnchangedSelfCopy(srcBucket.name === b.name && src.key === key && src.isLatest, src, r)) {
    throw new S3Error('InvalidRequest', 'This copy request is illegal because it is trying to copy an object to itself without changing the object\'s metadata, storage class, website redirect location or encryption attributes.');
  }
  const attrs = copyAttributes(src, r);
  ctx.svc.store.checkWriteConditions(b.name, key, cond);
  const body = bodyFromVersion(ctx.svc.store, src, undefined, r.checksumAlgorithm ?? src.checksum?.algorithm);
  let v: ObjectVersion;
  try {
    v = await ctx.svc.store.putObject(b, key, ctx.accessKey, body, attrs, cond);
  } catch (e) {
    // A refusal before the body was read (lock, precondition) must not leave the source's blob reader open.
    body.stream.destroy();
    throw e;
  }
  ctx.versionId = v.versionId;
  const headers: Record<string, string> = {};
  if (b.versioning !== 'Unversioned') headers['x-amz-version-id'] = v.versionId;
  if (srcBucket.versioning !== 'Unversioned' || src.versionId !== 'null') headers['x-amz-copy-source-version-id'] = src.versionId;
  ctx.sendXml(200, 'CopyObjectResult', copyResultXml(v), headers);
};
