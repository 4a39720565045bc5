// Which access level each S3 operation needs on its bucket (docs/decisions/0015-access-grants.md).
// A key has `owner` on the buckets it created, and what its grants give on the others.
import type { GrantAccess } from '../meta/types';

/** Operations that change objects (and uploads): `write`. */
const WRITE_OPERATIONS: ReadonlySet<string> = new Set([
  'PutObject', 'CopyObject', 'DeleteObject', 'DeleteObjects', 'PutObjectTagging', 'DeleteObjectTagging',
  'CreateMultipartUpload', 'UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload', 'AbortMultipartUpload',
]);

/** Reads of objects, listings and bucket settings: `read`. */
const READ_OPERATION_RE = /^(Get|Head|List)/;

/**
 * The access an operation needs: reads need `read`, object changes `write`, and everything else
 * (bucket settings: versioning, object lock, tags, ACLs; deleting the bucket; object retention and
 * legal hold) `owner`. An operation this table does not know needs `owner`.
 */
export function requiredAccess(operation: string): GrantAccess {
  if (READ_OPERATION_RE.test(operation)) return 'read';
  if (WRITE_OPERATIONS.has(operation)) return 'write';
  return 'owner';
}
