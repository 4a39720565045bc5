/**
 * A Bucket, in phases: finalizer; the bucket on the grid (through the admin API of a Ready storage
 * pod) with its policy, versioning and object lock; an access key with the grants asked for and the
 * Secret that holds it (the secret is shown once: the Secret is written right after the key is
 * created; a lost Secret means a new key, and the old one is revoked); status; and on deletion,
 * `deletionPolicy` (Retain keeps the bucket, Delete removes it only when it is empty).
 */
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import { PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import type { AccessGrant, BucketInfo, CreateBucketRequest } from '../../../storage-node/src/admin/api-types';
import type { Bucket, BucketStatus, Grid } from '../api/types';
import { AdminApi, AdminApiError } from '../admin/client';
import { buildBucketSecret, bucketSecretName, gridS3Endpoint } from '../builders';
import type { ReconcileOutcome } from '../runtime/manager';
import { ensureGridSecret, gridParts, ReconcileDeps, writeStatus } from './grid';
import { emptyBucket, ensureDefaultRetention, S3Target, wantedRetention, withMaintenanceKey } from './bucket-s3';
import { ConditionInput, degradedCondition, podReady, setConditions } from './status';

export const BUCKET_FINALIZER = 'storage.archipel.io/bucket';
export const BUCKET_RETRY_MS = 5_000;

export type BucketAdmin = Pick<AdminApi, 'bucket' | 'createBucket' | 'deleteBucket' | 'createKey' | 'key' | 'setGrants' | 'revokeKey'>;
export type BucketAdminFactory = (host: string, port: number, token: string) => BucketAdmin;

/** The bucket with its defaults filled in (bucketName and secretName default to other fields). */
export function withDefaults(bucket: Bucket): Bucket {
  const bucketName = bucket.spec.bucketName || bucket.metadata.name;
  return { ...bucket, spec: { ...bucket.spec, bucketName, secretName: bucket.spec.secretName || `${bucketName}-s3`, grants: bucket.spec.grants?.length ? bucket.spec.grants : ['owner'] } };
}

/** The admin API's create request for a Bucket's spec. Pure. */
export function createBucketRequest(bucket: Bucket): CreateBucketRequest {
  const lock = bucket.spec.objectLock?.enabled === true;
  return {
    name: bucket.spec.bucketName,
    versioning: bucket.spec.versioning === 'Disabled' ? 'Unversioned' : bucket.spec.versioning,
    objectLock: lock,
    ...(bucket.spec.policy ? { policy: bucket.spec.policy } : {}),
  };
}

/** The key's grants: each access the spec asks for, on this bucket. Pure. */
export function bucketGrants(bucket: Bucket): AccessGrant[] {
  return [...new Set(bucket.spec.grants)].sort().map((access) => ({ bucket: bucket.spec.bucketName, access }));
}

const sameGrants = (a: readonly AccessGrant[], b: readonly AccessGrant[]): boolean =>
  JSON.stringify([...a].map((g) => `${g.bucket}:${g.access}`).sort()) === JSON.stringify([...b].map((g) => `${g.bucket}:${g.access}`).sort());

function decode(secret: V1Secret | undefined, key: string): string | undefined {
  const v = secret?.data?.[key];
  return v ? Buffer.from(v, 'base64').toString('utf8') : undefined;
}

export async function reconcileBucket(deps: ReconcileDeps & { bucketAdmin: BucketAdminFactory }, raw: Bucket, signal: AbortSignal): Promise<void | ReconcileOutcome> {
  const bucket = withDefaults(raw);
  const ns = bucket.metadata.namespace!;
  const nowIso = (deps.now?.() ?? new Date()).toISOString();
  const finalizers = bucket.metadata.finalizers ?? [];
  const deleting = bucket.metadata.deletionTimestamp !== undefined;

  const setStatus = async (phase: BucketStatus['phase'], conditions: ConditionInput[], extra: Partial<BucketStatus> = {}): Promise<void> => {
    const status: BucketStatus = {
      ...(raw.status ?? {}),
      ...extra,
      observedGeneration: bucket.metadata.generation,
      phase,
      conditions: setConditions(raw.status?.conditions, conditions, bucket.metadata.generation, nowIso),
    };
    await writeStatus(deps, 'Bucket', raw, status, signal);
  };
  const notReady = async (reason: string, message: string, degraded: boolean): Promise<ReconcileOutcome> => {
    await setStatus(deleting ? 'Deleting' : 'Pending', [
      { type: 'Ready', status: 'False', reason, message },
      degradedCondition(degraded ? [message] : [], reason),
      { type: 'Progressing', status: 'True', reason, message },
    ]);
    if (degraded) void deps.writes.event(bucket, 'Warning', reason, message);
    return { requeueAfterMs: BUCKET_RETRY_MS };
  };

  if (deleting && !finalizers.includes(BUCKET_FINALIZER)) return;
  if (!deleting && !finalizers.includes(BUCKET_FINALIZER)) {
    await deps.writes.setFinalizers('Bucket', raw as never, [...finalizers, BUCKET_FINALIZER], signal);
    return; // the update event brings the object back with its finalizer
  }

  const grid = deps.informers.get('Grid', ns, bucket.spec.grid) as unknown as Grid | undefined;
  if (!grid) {
    if (deleting) return removeFinalizer(deps, raw, finalizers, signal); // nothing left to delete through
    return notReady('ReferenceNotFound', `spec.grid ${JSON.stringify(bucket.spec.grid)} does not name a Grid in namespace ${ns}`, true);
  }
  const pod = gridParts(deps.informers, grid).pods.find((p: V1Pod) => podReady(p) && p.status?.podIP);
  if (!pod) return notReady('GridNotReady', `waiting for a Ready storage node of grid ${grid.metadata.name}`, false);
  const { adminToken } = await ensureGridSecret(deps, grid, signal);
  const admin = deps.bucketAdmin(pod.status!.podIP!, grid.spec.admin.port, adminToken);
  const name = bucket.spec.bucketName;
  const target: S3Target = { host: pod.status!.podIP!, port: grid.spec.s3.port, region: grid.spec.s3.region };

  if (deleting) return deleteBucket(deps, bucket, raw, admin, target, finalizers, notReady, signal);

  try {
    // The bucket.
    let info = await admin.bucket(name);
    if (!info) {
      info = await admin.createBucket(createBucketRequest(bucket));
      deps.log.info('bucket created', { namespace: ns, bucket: bucket.metadata.name, bucketName: name });
      void deps.writes.event(bucket, 'Normal', 'BucketCreated', `created bucket ${name} on grid ${grid.metadata.name}`);
    }
    const drift = bucketDrift(bucket, info);
    // The key and its Secret.
    const secretName = bucketSecretName(bucket);
    const secret = (await deps.writes.get('v1', 'Secret', ns, secretName, signal)) as V1Secret | undefined;
    const heldId = decode(secret, 'AWS_ACCESS_KEY_ID');
    const heldSecret = decode(secret, 'AWS_SECRET_ACCESS_KEY');
    const liveKey = heldId ? await admin.key(heldId) : undefined;
    let accessKeyId: string;
    if (liveKey && heldSecret) {
      accessKeyId = liveKey.accessKeyId;
      if (!sameGrants(liveKey.grants, bucketGrants(bucket))) await admin.setGrants(accessKeyId, bucketGrants(bucket));
      await deps.writes.apply(buildBucketSecret(bucket, grid, { accessKeyId, secretAccessKey: heldSecret }), signal);
    } else {
      const created = await admin.createKey({ name: `k8s ${ns}/${bucket.metadata.name}`.slice(0, 128), grants: bucketGrants(bucket) });
      // Shown once: into the Secret before anything else can fail.
      await deps.writes.apply(buildBucketSecret(bucket, grid, { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey }), signal);
      accessKeyId = created.accessKeyId;
      deps.log.info('bucket access key created', { namespace: ns, bucket: bucket.metadata.name, accessKeyId });
      void deps.writes.event(bucket, 'Normal', 'AccessKeyCreated', `access key ${accessKeyId} created; credentials in Secret ${secretName}`);
      for (const old of new Set([heldId, raw.status?.accessKeyId])) {
        if (old && old !== accessKeyId) {
          await admin.revokeKey(old).catch((e: unknown) => { if (!(e instanceof AdminApiError && e.status === 404)) throw e; });
          void deps.writes.event(bucket, 'Normal', 'AccessKeyRevoked', `access key ${old} revoked (its Secret was lost or changed)`);
        }
      }
    }
    // The default retention, through S3: checked when the spec changed or the Bucket is not Ready yet.
    const settled = raw.status?.phase === 'Ready' && raw.status.observedGeneration === bucket.metadata.generation;
    if ((wantedRetention(bucket) || drift.versioning) && !settled) {
      await withMaintenanceKey(admin, name, target, async (s3) => {
        if (drift.versioning) {
          await s3.send(new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: drift.versioning } }));
          void deps.writes.event(bucket, 'Normal', 'VersioningSet', `versioning of bucket ${name}: ${drift.versioning}`);
        }
        if (await ensureDefaultRetention(s3, bucket)) {
          const r = bucket.spec.objectLock!.defaultRetention!;
          void deps.writes.event(bucket, 'Normal', 'RetentionSet', `default retention of bucket ${name}: ${r.mode}, ${r.days !== undefined ? `${r.days} days` : `${r.years} years`}`);
        }
      });
    }
    if (drift.problems.length > 0) {
      await setStatus('Ready', [
        { type: 'Ready', status: 'True', reason: 'BucketReady', message: `bucket ${name} and access key ${accessKeyId} ready; credentials in Secret ${secretName}` },
        { type: 'Progressing', status: 'False', reason: 'Steady', message: 'nothing the operator can do' },
        { type: 'Degraded', status: 'True', reason: 'SpecNotApplied', message: drift.problems.join('; ') },
      ], { accessKeyId, endpoint: gridS3Endpoint(grid).url });
      return;
    }
    const notes = bucket.spec.quotaBytes !== undefined ? '; spec.quotaBytes is not enforced by the storage nodes yet' : '';
    await setStatus('Ready', [
      { type: 'Ready', status: 'True', reason: 'BucketReady', message: `bucket ${name} and access key ${accessKeyId} ready; credentials in Secret ${secretName}${notes}` },
      { type: 'Progressing', status: 'False', reason: 'Steady', message: 'nothing to do' },
      degradedCondition([]),
    ], { accessKeyId, endpoint: gridS3Endpoint(grid).url });
  } catch (err) {
    if (signal.aborted) throw err;
    if (err instanceof AdminApiError) return notReady('AdminApiFailed', err.message, true);
    throw err;
  }
}

/**
 * What differs between a Bucket's spec and the bucket on the grid: a versioning state to set
 * (through S3), and what cannot be changed after creation (its bound policy). Pure.
 */
export function bucketDrift(bucket: Bucket, info: BucketInfo): { versioning?: 'Enabled' | 'Suspended'; problems: string[] } {
  const problems: string[] = [];
  const wanted = createBucketRequest(bucket).versioning;
  let versioning: 'Enabled' | 'Suspended' | undefined;
  if (wanted !== info.versioning) {
    if (wanted === 'Unversioned') problems.push(`bucket ${info.name} is ${info.versioning}: versioning cannot go back to Disabled`);
    else versioning = wanted;
  }
  const policy = bucket.spec.policy ?? null;
  if (policy !== info.policy) {
    problems.push(`bucket ${info.name} is bound to ${info.policy === null ? 'no policy' : `policy ${info.policy}`}, spec.policy asks ${policy === null ? 'none' : policy}: a bucket's policy cannot be changed after its creation yet`);
  }
  return { ...(versioning ? { versioning } : {}), problems };
}

async function deleteBucket(
  deps: ReconcileDeps,
  bucket: Bucket,
  raw: Bucket,
  admin: BucketAdmin,
  target: S3Target,
  finalizers: string[],
  notReady: (reason: string, message: string, degraded: boolean) => Promise<ReconcileOutcome>,
  signal: AbortSignal,
): Promise<void | ReconcileOutcome> {
  const name = bucket.spec.bucketName;
  try {
    if (bucket.spec.deletionPolicy === 'Delete' && (await admin.bucket(name))) {
      const notEmpty = (e: unknown): boolean => e instanceof AdminApiError && e.status === 409;
      const deleted = await admin.deleteBucket(name).then(() => true, (e: unknown) => { if (notEmpty(e)) return false; throw e; });
      if (!deleted) {
        // Delete what may be deleted; what is under retention stays, and so does the Bucket.
        const result = await withMaintenanceKey(admin, name, target, (s3) => emptyBucket(s3, name));
        deps.log.info('bucket emptied for deletion', { namespace: bucket.metadata.namespace, bucket: bucket.metadata.name, deleted: result.deleted, kept: result.kept });
        if (result.kept > 0) {
          return notReady('ObjectsUnderRetention', `deletionPolicy is Delete, but ${result.kept} object version${result.kept === 1 ? '' : 's'} of bucket ${name} cannot be deleted (under retention or legal hold: ${result.reasons.join('; ')}); the Bucket is deleted once their retention ends, or set deletionPolicy: Retain to keep the bucket`, true);
        }
        await admin.deleteBucket(name).catch((e: unknown) => {
          if (notEmpty(e)) throw new Error(`bucket ${name} is still not empty after deleting its ${result.deleted} object versions (uploads in progress?); retrying`);
          throw e;
        });
      }
      void deps.writes.event(bucket, 'Normal', 'BucketDeleted', `bucket ${name} and its data deleted (deletionPolicy Delete)`);
    }
    // Retain keeps the bucket and its data; the key goes with its Secret (owned by the Bucket).
    const keyId = raw.status?.accessKeyId;
    if (keyId) await admin.revokeKey(keyId).catch((e: unknown) => { if (!(e instanceof AdminApiError && e.status === 404)) throw e; });
  } catch (err) {
    if (err instanceof AdminApiError) return notReady('AdminApiFailed', err.message, true);
    throw err;
  }
  return removeFinalizer(deps, raw, finalizers, signal);
}

async function removeFinalizer(deps: ReconcileDeps, raw: Bucket, finalizers: string[], signal: AbortSignal): Promise<void> {
  await deps.writes.setFinalizers('Bucket', raw as never, finalizers.filter((f) => f !== BUCKET_FINALIZER), signal);
}
