/**
 * What the admin API does not do for a Bucket and S3 does: a bucket's default object lock
 * retention, and emptying a bucket before its deletion (deletionPolicy Delete). Both go through a
 * storage pod's S3 port with a short-lived access key that owns just this bucket, created for the
 * call and revoked right after (never stored).
 */
import {
  DeleteObjectCommand, GetObjectLockConfigurationCommand, ListObjectVersionsCommand, PutObjectLockConfigurationCommand, S3Client,
} from '@aws-sdk/client-s3';
import type { Bucket } from '../api/types';
import { AdminApiError } from '../admin/client';
import type { BucketAdmin } from './bucket';

/** At most this many object versions are looked at per pass when emptying a bucket. */
export const MAX_VERSIONS_PER_PASS = 10_000;
const S3_TIMEOUT_MS = 10_000;

export interface S3Target {
  host: string;
  port: number;
  region: string;
}

/** Runs `fn` with an S3 client whose key owns `bucketName`; the key is revoked afterwards. */
export async function withMaintenanceKey<T>(admin: BucketAdmin, bucketName: string, target: S3Target, fn: (s3: S3Client) => Promise<T>): Promise<T> {
  const key = await admin.createKey({ name: `archipel-operator maintenance of ${bucketName}`.slice(0, 128), grants: [{ bucket: bucketName, access: 'owner' }] });
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  const s3 = new S3Client({
    endpoint: `http://${host}:${target.port}`,
    region: target.region,
    forcePathStyle: true,
    credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
    maxAttempts: 2,
    requestHandler: { requestTimeout: S3_TIMEOUT_MS },
  });
  try {
    return await fn(s3);
  } finally {
    s3.destroy();
    await admin.revokeKey(key.accessKeyId).catch((e: unknown) => {
      if (!(e instanceof AdminApiError && e.status === 404)) throw e;
    });
  }
}

/** The default retention a Bucket asks for, as S3 says it; undefined when it asks none. Pure. */
export function wantedRetention(bucket: Bucket): { Mode: 'GOVERNANCE' | 'COMPLIANCE'; Days?: number; Years?: number } | undefined {
  const r = bucket.spec.objectLock?.enabled ? bucket.spec.objectLock.defaultRetention : undefined;
  if (!r) return undefined;
  return { Mode: r.mode, ...(r.days !== undefined ? { Days: r.days } : { Years: r.years }) };
}

/** Sets the bucket's default retention when it differs from the spec; true when it was changed. */
export async function ensureDefaultRetention(s3: S3Client, bucket: Bucket): Promise<boolean> {
  const wanted = wantedRetention(bucket);
  if (!wanted) return false;
  const current = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: bucket.spec.bucketName })).catch(() => undefined);
  const have = current?.ObjectLockConfiguration?.Rule?.DefaultRetention;
  if (have && have.Mode === wanted.Mode && have.Days === wanted.Days && have.Years === wanted.Years) return false;
  await s3.send(new PutObjectLockConfigurationCommand({
    Bucket: bucket.spec.bucketName,
    ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: wanted } },
  }));
  return true;
}

export interface EmptyResult {
  deleted: number;
  /** Versions that could not be deleted (under retention or legal hold), with why for the first ones. */
  kept: number;
  reasons: string[];
}

/** Deletes every object version and delete marker it can; what is under retention stays. */
export async function emptyBucket(s3: S3Client, bucketName: string): Promise<EmptyResult> {
  const out: EmptyResult = { deleted: 0, kept: 0, reasons: [] };
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  for (let seen = 0; seen < MAX_VERSIONS_PER_PASS;) {
    const page = await s3.send(new ListObjectVersionsCommand({ Bucket: bucketName, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker, MaxKeys: 1000 }));
    const items = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])];
    seen += items.length;
    for (const v of items) {
      try {
        await s3.send(new DeleteObjectCommand({ Bucket: bucketName, Key: v.Key!, ...(v.VersionId && v.VersionId !== 'null' ? { VersionId: v.VersionId } : {}) }));
        out.deleted++;
      } catch (err) {
        out.kept++;
        if (out.reasons.length < 3) out.reasons.push(`${v.Key}: ${(err as Error).message}`);
      }
    }
    if (!page.IsTruncated) break;
    keyMarker = page.NextKeyMarker;
    versionIdMarker = page.NextVersionIdMarker;
  }
  return out;
}
