import assert from 'node:assert/strict';
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import winston from 'winston';
import type { AccessGrant, AccessKeyInfo, BucketInfo, CreateAccessKeyRequest, CreateBucketRequest } from '../../../storage-node/src/admin/api-types';
import type { Bucket } from '../api/types';
import { AdminApiError } from '../admin/client';
import { bucket as bucketFixture, SECRETS, threeSites } from '../builders/fixtures';
import { buildGridSecret, LABELS } from '../builders';
import { BUCKET_FINALIZER, BucketAdmin, bucketDrift, bucketGrants, createBucketRequest, reconcileBucket, withDefaults } from './bucket';
import { wantedRetention } from './bucket-s3';
import { buildBucketSecret } from '../builders/secrets';
import type { KubeWrites } from './kube-writes';

const log = winston.createLogger({ silent: true });

/** An in-memory admin API of one grid. */
class FakeAdmin implements BucketAdmin {
  buckets = new Map<string, BucketInfo>();
  keys = new Map<string, AccessKeyInfo & { secretAccessKey: string }>();
  revoked: string[] = [];
  private seq = 0;

  async bucket(name: string) { return this.buckets.get(name); }
  async createBucket(req: CreateBucketRequest) {
    const info: BucketInfo = { name: req.name, owner: null, versioning: req.versioning ?? 'Unversioned', objectLock: req.objectLock ?? false, policy: req.policy ?? null, region: 'us-east-1', createdAt: '' };
    this.buckets.set(req.name, info);
    return info;
  }
  async deleteBucket(name: string) { this.buckets.delete(name); }
  async createKey(req: CreateAccessKeyRequest) {
    const k = { accessKeyId: `AK${++this.seq}`, name: req.name, createdAt: '', grants: req.grants ?? [], secretAccessKey: `secret-${this.seq}-0123456789` };
    this.keys.set(k.accessKeyId, k);
    return k;
  }
  async key(id: string) {
    const k = this.keys.get(id);
    return k ? { accessKeyId: k.accessKeyId, name: k.name, createdAt: '', grants: k.grants } : undefined;
  }
  async setGrants(id: string, grants: AccessGrant[]) { const k = this.keys.get(id)!; k.grants = grants; return k; }
  async revokeKey(id: string) {
    if (!this.keys.delete(id)) throw new AdminApiError(404, 'NoSuchKey', 'no such key');
    this.revoked.push(id);
  }
}

/** The API server as the Bucket reconciler writes to it. */
class FakeWrites {
  secrets = new Map<string, V1Secret>();
  statuses: any[] = [];
  finalizers: string[][] = [];
  events: string[] = [];
  async get(_v: string, kind: string, _ns: string, name: string) { return kind === 'Secret' ? this.secrets.get(name) : undefined; }
  async create(obj: V1Secret) { this.secrets.set(obj.metadata!.name!, obj); return obj; }
  async apply(obj: V1Secret) { this.secrets.set(obj.metadata!.name!, obj); return obj; }
  async patchStatus(_k: string, _ns: string, _n: string, status: unknown) { this.statuses.push(status); }
  async setFinalizers(_k: string, _o: unknown, f: string[]) { this.finalizers.push(f); }
  async event(_o: unknown, _t: string, reason: string) { this.events.push(reason); }
}

function setup(b: Bucket) {
  const { grid, sites, pools } = threeSites();
  const readyPod = {
    metadata: { name: 'dc1-pool-0', namespace: 'storage', labels: { [LABELS.grid]: 'demo', [LABELS.pool]: 'dc1-pool' } },
    status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] },
  } as V1Pod;
  const objects: Record<string, any[]> = { Grid: [grid], Site: sites, NodePool: pools, ReplicationPolicy: [], Pod: [readyPod], Bucket: [b] };
  const informers = {
    get: (kind: string, _ns: string | undefined, name: string) => objects[kind]?.find((o) => o.metadata.name === name),
    list: (kind: string) => objects[kind] ?? [],
  };
  const writes = new FakeWrites();
  writes.secrets.set('demo-admin', buildGridSecret(grid, SECRETS));
  const admin = new FakeAdmin();
  const deps = { informers, writes: writes as unknown as KubeWrites, admin: () => { throw new Error('not used'); }, log, bucketAdmin: () => admin };
  return { deps, writes, admin };
}

const withFinalizer = (b: Bucket, extra: Partial<Bucket['metadata']> = {}): Bucket => ({ ...b, metadata: { ...b.metadata, generation: 1, finalizers: [BUCKET_FINALIZER], ...extra } });
const secretValue = (s: V1Secret | undefined, k: string): string => Buffer.from(s?.data?.[k] ?? '', 'base64').toString();

describe('operator: Bucket reconcile (fake admin API and API server)', () => {
  const signal = new AbortController().signal;

  it('adds its finalizer first, and nothing else in that pass', async () => {
    const b = bucketFixture('logs');
    const { deps, writes, admin } = setup(b);
    await reconcileBucket(deps, b, signal);
    assert.deepEqual(writes.finalizers, [[BUCKET_FINALIZER]]);
    assert.equal(admin.buckets.size, 0);
  });

  it('creates the bucket and a key with the grants asked, writes the Secret with its secret, and says Ready', async () => {
    const b = withFinalizer(bucketFixture('logs', { grants: ['read'] }));
    const { deps, writes, admin } = setup(b);
    assert.equal(await reconcileBucket(deps, b, signal), undefined);
    assert.deepEqual([...admin.buckets.keys()], ['logs']);
    const key = [...admin.keys.values()][0];
    assert.deepEqual(key.grants, [{ bucket: 'logs', access: 'read' }]);
    const secret = writes.secrets.get('logs-s3');
    assert.equal(secretValue(secret, 'AWS_ACCESS_KEY_ID'), key.accessKeyId);
    assert.equal(secretValue(secret, 'AWS_SECRET_ACCESS_KEY'), key.secretAccessKey);
    const status = writes.statuses.at(-1);
    assert.equal(status.phase, 'Ready');
    assert.equal(status.accessKeyId, key.accessKeyId);
    assert.deepEqual(writes.events, ['BucketCreated', 'AccessKeyCreated']);
  });

  it('keeps the key while its Secret holds it; a lost Secret gets a new key and the old one is revoked', async () => {
    const b = withFinalizer(bucketFixture('logs'));
    const { deps, writes, admin } = setup(b);
    await reconcileBucket(deps, b, signal);
    const first = secretValue(writes.secrets.get('logs-s3'), 'AWS_ACCESS_KEY_ID');
    await reconcileBucket(deps, b, signal);
    assert.equal(admin.keys.size, 1, 'no new key while the Secret is there');
    writes.secrets.delete('logs-s3');
    const withStatus = { ...b, status: { accessKeyId: first } };
    await reconcileBucket(deps, withStatus, signal);
    const second = secretValue(writes.secrets.get('logs-s3'), 'AWS_ACCESS_KEY_ID');
    assert.notEqual(second, first);
    assert.deepEqual(admin.revoked, [first]);
    assert.deepEqual([...admin.keys.keys()], [second]);
  });

  it('on deletion with Retain keeps the bucket, revokes the key and removes the finalizer', async () => {
    const b = withFinalizer(bucketFixture('logs'));
    const { deps, writes, admin } = setup(b);
    await reconcileBucket(deps, b, signal);
    const keyId = writes.statuses.at(-1).accessKeyId;
    const deleting = { ...withFinalizer(b, { deletionTimestamp: '2026-01-01T00:00:00Z' }), status: { accessKeyId: keyId } };
    await reconcileBucket(deps, deleting, signal);
    assert.deepEqual([...admin.buckets.keys()], ['logs']);
    assert.deepEqual(admin.revoked, [keyId]);
    assert.deepEqual(writes.finalizers.at(-1), []);
  });

  it('on deletion with Delete removes an empty bucket', async () => {
    const b = withFinalizer(bucketFixture('logs', { deletionPolicy: 'Delete' }));
    const { deps, writes, admin } = setup(b);
    await reconcileBucket(deps, b, signal);
    await reconcileBucket(deps, withFinalizer(b, { deletionTimestamp: '2026-01-01T00:00:00Z' }), signal);
    assert.equal(admin.buckets.size, 0);
    assert.deepEqual(writes.finalizers.at(-1), []);
  });

  it('says which Grid is missing, as Degraded, and retries', async () => {
    const b = withFinalizer(bucketFixture('logs', { grid: 'nope' }));
    const { deps, writes } = setup(b);
    const out = await reconcileBucket(deps, b, signal);
    assert.ok(out && (out.requeueAfterMs ?? 0) > 0);
    const degraded = writes.statuses.at(-1).conditions.find((c: any) => c.type === 'Degraded');
    assert.equal(degraded.reason, 'ReferenceNotFound');
    assert.match(degraded.message, /spec.grid "nope" does not name a Grid/);
  });
});

describe('operator: a Bucket\'s spec as the admin API and S3 take it', () => {
  it('fills in a Bucket\'s defaults and turns its spec into the admin API request and grants', () => {
    const spec = { versioning: 'Enabled', objectLock: { enabled: true }, policy: 'default', grants: ['write', 'read', 'write'] };
    const parsed = bucketFixture('records', spec);
    const b = withDefaults({ ...parsed, spec: { ...parsed.spec, bucketName: '', secretName: '' } });
    assert.equal(b.spec.bucketName, 'records');
    assert.equal(b.spec.secretName, 'records-s3');
    assert.deepEqual(createBucketRequest(b), { name: 'records', versioning: 'Enabled', objectLock: true, policy: 'default' });
    assert.deepEqual(bucketGrants(b), [{ bucket: 'records', access: 'read' }, { bucket: 'records', access: 'write' }]);
    const plain = withDefaults(bucketFixture('logs'));
    assert.deepEqual(createBucketRequest(plain), { name: 'logs', versioning: 'Unversioned', objectLock: false });
    assert.deepEqual(bucketGrants(plain), [{ bucket: 'logs', access: 'owner' }]);
    // The Secret the reconciler writes right after creating the key.
    const { grid } = threeSites();
    const secret = buildBucketSecret(plain, grid, { accessKeyId: 'AKIA0123', secretAccessKey: SECRETS.adminToken });
    assert.equal(secret.metadata!.name, 'logs-s3');
  });

  it('finds what a Bucket asks that the bucket on the grid does not have: versioning to set, a policy that cannot change', () => {
    const info = { name: 'logs', owner: null, versioning: 'Unversioned' as const, objectLock: false, policy: null, region: 'us-east-1', createdAt: '' };
    assert.deepEqual(bucketDrift(withDefaults(bucketFixture('logs')), info), { problems: [] });
    assert.deepEqual(bucketDrift(withDefaults(bucketFixture('logs', { versioning: 'Enabled' })), info), { versioning: 'Enabled', problems: [] });
    const back = bucketDrift(withDefaults(bucketFixture('logs')), { ...info, versioning: 'Suspended' });
    assert.match(back.problems[0], /cannot go back to Disabled/);
    const moved = bucketDrift(withDefaults(bucketFixture('logs', { policy: 'two-sites' })), { ...info, policy: 'default' });
    assert.match(moved.problems[0], /bound to policy default, spec.policy asks two-sites/);
  });

  it('asks S3 for the default retention of a locked Bucket only', () => {
    assert.equal(wantedRetention(withDefaults(bucketFixture('logs'))), undefined);
    const locked = withDefaults(bucketFixture('records', { versioning: 'Enabled', objectLock: { enabled: true, defaultRetention: { mode: 'COMPLIANCE', days: 30 } } }));
    assert.deepEqual(wantedRetention(locked), { Mode: 'COMPLIANCE', Days: 30 });
    const years = withDefaults(bucketFixture('records', { versioning: 'Enabled', objectLock: { enabled: true, defaultRetention: { mode: 'GOVERNANCE', years: 2 } } }));
    assert.deepEqual(wantedRetention(years), { Mode: 'GOVERNANCE', Years: 2 });
  });
});
