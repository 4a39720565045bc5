import assert from 'node:assert/strict';
import { requiredAccess } from './access';

describe('s3/access: the access each operation needs', () => {
  it('reads need read: GET, HEAD, listings and Get* of settings', () => {
    for (const op of ['GetObject', 'HeadObject', 'HeadBucket', 'ListObjects', 'ListObjectsV2', 'ListObjectVersions', 'ListMultipartUploads', 'ListParts',
      'GetObjectTagging', 'GetObjectRetention', 'GetObjectLegalHold', 'GetBucketVersioning', 'GetObjectLockConfiguration', 'GetBucketTagging', 'GetBucketLocation']) {
      assert.equal(requiredAccess(op), 'read', op);
    }
  });

  it('object changes need write: PUT, copy, DELETE, tagging, multipart', () => {
    for (const op of ['PutObject', 'CopyObject', 'DeleteObject', 'DeleteObjects', 'PutObjectTagging', 'DeleteObjectTagging',
      'CreateMultipartUpload', 'UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload', 'AbortMultipartUpload']) {
      assert.equal(requiredAccess(op), 'write', op);
    }
  });

  it('bucket settings, bucket deletion and object lock settings need owner, and so does anything unknown', () => {
    for (const op of ['PutBucketVersioning', 'PutObjectLockConfiguration', 'PutBucketTagging', 'DeleteBucketTagging', 'DeleteBucket',
      'PutBucketAcl', 'PutObjectAcl', 'PutObjectRetention', 'PutObjectLegalHold', 'SomethingNew']) {
      assert.equal(requiredAccess(op), 'owner', op);
    }
  });
});
