import { S3Error } from './error';
import type { Handler } from './context';
import * as bucket from './bucket';
import * as put from './put';
import * as get from './get';
import * as del from './delete';
import * as copy from './copy';
import * as list from './list';
import * as multipart from './multipart';
import * as lock from './lock';
import * as tagging from './tagging';

export interface Route {
  operation: string;
  handler: Handler;
}

const notImplemented = (operation: string): Route => ({
  operation,
  handler: async () => {
    throw new S3Error('NotImplemented', `${operation} is not implemented by Archipel.`);
  },
});

/** Sub-resources we do not serve: answered NotImplemented instead of being mistaken for a plain GET/PUT. */
const UNSUPPORTED_BUCKET = ['policy', 'cors', 'lifecycle', 'encryption', 'website', 'logging', 'notification', 'replication', 'requestPayment', 'accelerate', 'analytics', 'metrics', 'inventory', 'intelligent-tiering', 'ownershipControls', 'publicAccessBlock', 'policyStatus'];
const UNSUPPORTED_OBJECT = ['restore', 'select', 'torrent', 'attributes'];

function firstPresent(q: Map<string, string>, names: string[]): string | undefined {
  return names.find((n) => q.has(n));
}

/** Maps method + path shape + sub-resource to the S3 operation. Pure: no I/O, no auth. */
export function route(method: string, hasBucket: boolean, hasKey: boolean, q: Map<string, string>, headers: Record<string, string | string[] | undefined>): Route {
  if (!hasBucket) {
    if (method === 'GET') return { operation: 'ListBuckets', handler: bucket.listBuckets };
    throw new S3Error('MethodNotAllowed');
  }
  if (!hasKey) {
    const unsupported = firstPresent(q, UNSUPPORTED_BUCKET);
    switch (method) {
      case 'GET':
        if (unsupported) return bucket.missingConfig(unsupported);
        if (q.has('location')) return { operation: 'GetBucketLocation', handler: bucket.getLocation };
        if (q.has('versioning')) return { operation: 'GetBucketVersioning', handler: bucket.getVersioning };
        if (q.has('object-lock')) return { operation: 'GetObjectLockConfiguration', handler: lock.getBucketLock };
        if (q.has('tagging')) return { operation: 'GetBucketTagging', handler: tagging.getBucketTagging };
        if (q.has('acl')) return { operation: 'GetBucketAcl', handler: bucket.getAcl };
        if (q.has('versions')) return { operation: 'ListObjectVersions', handler: list.listObjectVersions };
        if (q.has('uploads')) return { operation: 'ListMultipartUploads', handler: multipart.listUploads };
        if (q.get('list-type') === '2') return { operation: 'ListObjectsV2', handler: list.listObjectsV2 };
        return { operation: 'ListObjects', handler: list.listObjectsV1 };
      case 'HEAD':
        return { operation: 'HeadBucket', handler: bucket.headBucket };
      case 'PUT':
        if (unsupported) return notImplemented(`PutBucket:${unsupported}`);
        if (q.has('versioning')) return { operation: 'PutBucketVersioning', handler: bucket.putVersioning };
        if (q.has('object-lock')) return { operation: 'PutObjectLockConfiguration', handler: lock.putBucketLock };
        if (q.has('tagging')) return { operation: 'PutBucketTagging', handler: tagging.putBucketTagging };
        if (q.has('acl')) return { operation: 'PutBucketAcl', handler: bucket.putAcl };
        return { operation: 'CreateBucket', handler: bucket.createBucket };
      case 'DELETE':
        if (unsupported) return notImplemented(`DeleteBucket:${unsupported}`);
        if (q.has('tagging')) return { operation: 'DeleteBucketTagging', handler: tagging.deleteBucketTagging };
        return { operation: 'DeleteBucket', handler: bucket.deleteBucket };
      case 'POST':
        if (q.has('delete')) return { operation: 'DeleteObjects', handler: del.deleteObjects };
        return notImplemented('PostObject');
      default:
        throw new S3Error('MethodNotAllowed');
    }
  }
  const unsupported = firstPresent(q, UNSUPPORTED_OBJECT);
  if (unsupported) return notImplemented(`Object:${unsupported}`);
  switch (method) {
    case 'GET':
      if (q.has('uploadId')) return { operation: 'ListParts', handler: multipart.listParts };
      if (q.has('tagging')) return { operation: 'GetObjectTagging', handler: tagging.getObjectTagging };
      if (q.has('retention')) return { operation: 'GetObjectRetention', handler: lock.getRetention };
      if (q.has('legal-hold')) return { operation: 'GetObjectLegalHold', handler: lock.getLegalHold };
      if (q.has('acl')) return { operation: 'GetObjectAcl', handler: bucket.getAcl };
      return { operation: 'GetObject', handler: get.getObject };
    case 'HEAD':
      return { operation: 'HeadObject', handler: get.headObject };
    case 'PUT':
      if (q.has('partNumber') && q.has('uploadId')) {
        if (headers['x-amz-copy-source'] !== undefined) return { operation: 'UploadPartCopy', handler: multipart.uploadPartCopy };
        return { operation: 'UploadPart', handler: multipart.uploadPart };
      }
      if (q.has('tagging')) return { operation: 'PutObjectTagging', handler: tagging.putObjectTagging };
      if (q.has('retention')) return { operation: 'PutObjectRetention', handler: lock.putRetention };
      if (q.has('legal-hold')) return { operation: 'PutObjectLegalHold', handler: lock.putLegalHold };
      if (q.has('acl')) return { operation: 'PutObjectAcl', handler: bucket.putAcl };
      if (headers['x-amz-copy-source'] !== undefined) return { operation: 'CopyObject', handler: copy.copyObject };
      return { operation: 'PutObject', handler: put.putObject };
    case 'DELETE':
      if (q.has('uploadId')) return { operation: 'AbortMultipartUpload', handler: multipart.abortUpload };
      if (q.has('tagging')) return { operation: 'DeleteObjectTagging', handler: tagging.deleteObjectTagging };
      return { operation: 'DeleteObject', handler: del.deleteObject };
    case 'POST':
      if (q.has('uploads')) return { operation: 'CreateMultipartUpload', handler: multipart.createUpload };
      if (q.has('uploadId')) return { operation: 'CompleteMultipartUpload', handler: multipart.completeUpload };
      return notImplemented('PostObject');
    default:
      throw new S3Error('MethodNotAllowed');
  }
}
