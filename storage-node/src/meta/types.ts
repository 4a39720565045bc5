import type { ChecksumAlgorithm } from '../util/checksum';

/** Persisted record types of the metadata store. Changing a field means a format version bump + migration. */

export type VersioningState = 'Unversioned' | 'Enabled' | 'Suspended';
export type RetentionMode = 'GOVERNANCE' | 'COMPLIANCE';

/** How far a grant reaches: read (GET, HEAD, listings), write (also object changes), owner (also bucket settings). */
export type GrantAccess = 'read' | 'write' | 'owner';

/** Access to the buckets whose name matches `bucket` (a name, or a glob with `*` and `?`). */
export interface AccessGrant {
  bucket: string;
  access: GrantAccess;
}

export interface AccessKeyRecord {
  accessKeyId: string;
  secretAccessKey: string;
  name: string;
  createdMs: number;
  /** Buckets this key may use besides the ones it owns (docs/decisions/0015-access-grants.md). */
  grants: AccessGrant[];
}

/** An access key as the node config declares it: no grants (it uses the buckets it creates). */
export type ConfigAccessKey = Omit<AccessKeyRecord, 'grants'>;

export interface BucketRecord {
  name: string;
  /** Access key id of the owner (the key that created it). */
  owner: string;
  createdMs: number;
  region: string;
  versioning: VersioningState;
  objectLockEnabled: boolean;
  /** Default retention applied to new versions when object lock is enabled. Exactly one of days/years. */
  lockDefault?: { mode: RetentionMode; days?: number; years?: number };
  /** Bucket tagging, in the order given. */
  tags?: [string, string][];
  /** A replication policy of the layout bound to the bucket: its data is placed by it whatever the globs say. */
  policy?: string;
}

export interface ObjectChecksum {
  algorithm: ChecksumAlgorithm;
  /** Base64 of the binary digest; COMPOSITE values carry the "-N" suffix as S3 shows them. */
  value: string;
  type: 'FULL_OBJECT' | 'COMPOSITE';
}

export interface BlobRef {
  id: string;
  size: number;
}

export interface PartInfo {
  partNumber: number;
  size: number;
  /** Hex MD5 of the part, no quotes. */
  etag: string;
  /** Base64 checksum of the part (algorithm of the object). */
  checksum?: string;
}

export interface ObjectVersion {
  bucket: string;
  key: string;
  /** 'null' for versions written while versioning was never enabled or is suspended. */
  versionId: string;
  /** Hybrid logical clock: orders versions of a key, newest first; ties broken by versionId. */
  ts: number;
  isLatest: boolean;
  deleteMarker: boolean;
  size: number;
  /** Hex MD5, or "<hex md5 of md5s>-N" for multipart; no quotes. Empty for delete markers. */
  etag: string;
  lastModifiedMs: number;
  contentType?: string;
  /** content-encoding, content-disposition, cache-control, content-language, expires, as sent. */
  headers: Record<string, string>;
  /** x-amz-meta-* with the prefix removed, names lowercased. */
  userMeta: Record<string, string>;
  checksum?: ObjectChecksum;
  /** Present for objects made by CompleteMultipartUpload, in part order. */
  parts?: PartInfo[];
  /** Data, in order; concatenated they are the object's bytes. Empty for empty objects and delete markers. */
  blobs: BlobRef[];
  tags: [string, string][];
  retention?: { mode: RetentionMode; untilMs: number };
  legalHold: boolean;
  owner: string;
}

export interface UploadRecord {
  uploadId: string;
  bucket: string;
  key: string;
  initiatedMs: number;
  owner: string;
  contentType?: string;
  headers: Record<string, string>;
  userMeta: Record<string, string>;
  tags: [string, string][];
  checksumAlgorithm?: ChecksumAlgorithm;
  checksumType?: 'FULL_OBJECT' | 'COMPOSITE';
  retention?: { mode: RetentionMode; untilMs: number };
  legalHold: boolean;
}

export interface PartRecord {
  uploadId: string;
  partNumber: number;
  size: number;
  etag: string;
  checksum?: string;
  lastModifiedMs: number;
  blob?: BlobRef;
}

export interface ListObjectsQuery {
  prefix: string;
  delimiter?: string;
  /** Exclusive lower bound: start-after, marker, or the position a continuation token encodes. */
  after?: string;
  maxKeys: number;
}

export interface ListObjectsResult {
  /** Latest versions that are not delete markers, in key order. */
  contents: ObjectVersion[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** The last key or common prefix returned (what the next page starts after); set when truncated. */
  nextAfter?: string;
}

export interface ListVersionsQuery {
  prefix: string;
  delimiter?: string;
  keyMarker?: string;
  versionIdMarker?: string;
  maxKeys: number;
}

export interface ListVersionsResult {
  /** Versions and delete markers: key ascending, then newest first. */
  versions: ObjectVersion[];
  commonPrefixes: string[];
  isTruncated: boolean;
  nextKeyMarker?: string;
  nextVersionIdMarker?: string;
}

export interface ListUploadsQuery {
  prefix: string;
  delimiter?: string;
  keyMarker?: string;
  uploadIdMarker?: string;
  maxUploads: number;
}

export interface ListUploadsResult {
  /** Key ascending, then initiation time ascending. */
  uploads: UploadRecord[];
  commonPrefixes: string[];
  isTruncated: boolean;
  nextKeyMarker?: string;
  nextUploadIdMarker?: string;
}
