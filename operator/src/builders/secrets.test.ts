import assert from 'node:assert/strict';
import type { V1Secret } from '@kubernetes/client-node';
import { BuildError } from './common';
import { bucket, grid, NS, SECRETS } from './fixtures';
import { SECRET_KEYS } from './node-config';
import { buildBucketSecret, buildGridSecret } from './secrets';
import { buildGridS3Service } from './services';

const decode = (s: V1Secret): Record<string, string> =>
  Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

const CREDS = { accessKeyId: 'AKARCHIPEL0001', secretAccessKey: 'a-secret-access-key-0123456789' };

describe('builders: Secrets', () => {
  it('holds the grid secret and admin token it is given in `<grid>-admin`, owned by the Grid', () => {
    const s = buildGridSecret(grid(), SECRETS);
    assert.equal(s.kind, 'Secret');
    assert.equal(s.type, 'Opaque');
    assert.equal(s.metadata?.name, 'demo-admin');
    assert.equal(s.metadata?.namespace, NS);
    assert.deepEqual(decode(s), { [SECRET_KEYS.adminToken]: SECRETS.adminToken, [SECRET_KEYS.gridSecret]: SECRETS.gridSecret });
    assert.equal(s.stringData, undefined, 'data only: what the API server returns, so apply sees no difference');
    assert.equal(s.metadata?.ownerReferences?.[0].kind, 'Grid');
    assert.equal(buildGridSecret(grid({ admin: { secretName: 'vault-admin' } }), SECRETS).metadata?.name, 'vault-admin');
  });

  it('refuses a grid secret the nodes would refuse, without printing it', () => {
    const short = { ...SECRETS, gridSecret: 'too-short-secret' };
    assert.throws(() => buildGridSecret(grid(), short), (e: Error) =>
      e instanceof BuildError && /Grid demo: the grid secret must be at least 32 bytes/.test(e.message) && !e.message.includes(short.gridSecret));
    assert.throws(() => buildGridSecret(grid(), { ...SECRETS, adminToken: 'has a space in it, sadly' }), /printable ASCII without spaces/);
    assert.throws(() => buildGridSecret(grid(), { ...SECRETS, adminToken: '' }), /admin token must be at least 16 bytes/);
  });

  it('gives a Bucket `<bucket>-s3` with credentials, bucket and the grid S3 endpoint, owned by the Bucket', () => {
    const s = buildBucketSecret(bucket('records'), grid(), CREDS);
    assert.equal(s.metadata?.name, 'records-s3');
    assert.equal(s.metadata?.namespace, NS);
    assert.deepEqual(decode(s), {
      AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
      AWS_ENDPOINT_URL: 'http://demo-s3.storage.svc.cluster.local:9000',
      AWS_REGION: 'us-east-1',
      BUCKET_NAME: 'records',
      BUCKET_HOST: 'demo-s3.storage.svc.cluster.local',
      BUCKET_PORT: '9000',
    });
    assert.deepEqual(s.metadata?.ownerReferences, [{
      apiVersion: 'storage.archipel.io/v1alpha1', kind: 'Bucket', name: 'records', uid: 'uid-bucket-records', controller: true, blockOwnerDeletion: true,
    }]);
    assert.equal(s.metadata?.labels?.['storage.archipel.io/bucket'], 'records');
  });

  it('points at the grid S3 Service by name, port and cluster domain', () => {
    const g = grid({ s3: { port: 8443, region: 'eu-west-3' } });
    const data = decode(buildBucketSecret(bucket('records'), g, CREDS, { clusterDomain: 'corp.internal' }));
    assert.equal(data.BUCKET_HOST, `${buildGridS3Service(g).metadata?.name}.${NS}.svc.corp.internal`);
    assert.equal(data.BUCKET_PORT, String(buildGridS3Service(g).spec?.ports?.[0].port));
    assert.equal(data.AWS_ENDPOINT_URL, 'http://demo-s3.storage.svc.corp.internal:8443');
    assert.equal(data.AWS_REGION, 'eu-west-3');
  });

  it('uses spec.secretName and spec.bucketName when given', () => {
    const s = buildBucketSecret(bucket('records-cr', { bucketName: 'med-records', secretName: 'app-s3-creds' }), grid(), CREDS);
    assert.equal(s.metadata?.name, 'app-s3-creds');
    assert.equal(decode(s).BUCKET_NAME, 'med-records');
    assert.equal(buildBucketSecret(bucket('x1', { bucketName: 'med-x1' }), grid(), CREDS).metadata?.name, 'med-x1-s3');
  });

  it('refuses a Bucket of another grid and credentials the node would not issue', () => {
    assert.throws(() => buildBucketSecret(bucket('records', { grid: 'other' }), grid(), CREDS),
      (e: Error) => e instanceof BuildError && /Bucket records: spec\.grid is "other", not "demo"/.test(e.message));
    assert.throws(() => buildBucketSecret(bucket('records'), grid(), { ...CREDS, accessKeyId: 'a b' }), /access key id/);
    assert.throws(() => buildBucketSecret(bucket('records'), grid(), { ...CREDS, secretAccessKey: 'short' }),
      (e: Error) => /secret access key must be at least 8 bytes/.test(e.message) && !e.message.includes('short'));
  });

  it('is deterministic', () => {
    assert.deepStrictEqual(buildGridSecret(grid(), SECRETS), buildGridSecret(grid(), SECRETS));
    assert.deepStrictEqual(buildBucketSecret(bucket('records'), grid(), CREDS), buildBucketSecret(bucket('records'), grid(), CREDS));
  });
});
