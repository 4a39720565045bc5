import assert from 'node:assert/strict';
import {
  CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListBucketsCommand, PutBucketTaggingCommand, PutBucketVersioningCommand,
  PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import type { AccessKeyInfo, BucketInfo, CreateAccessKeyResponse } from '../../storage-node/src/admin/api-types';
import { applyLayout, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, startNode, StartedNode, waitFor } from '../helpers/node-process';
import { send } from '../helpers/signed-http';

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function admin(n: StartedNode, method: string, path: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = { authorization: `Bearer ${n.adminToken}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await send(n.host, n.adminPort, method, path, headers, body === undefined ? undefined : JSON.stringify(body));
  return { status: r.status, body: r.body ? JSON.parse(r.body) : undefined };
}

async function createKey(n: StartedNode, grants: unknown[]): Promise<CreateAccessKeyResponse> {
  const r = await admin(n, 'POST', '/v1/keys', { name: 'app', grants });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body as CreateAccessKeyResponse;
}

/** The S3 error code of a failed call, or 'OK'. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return (e as Error).name;
  }
}

describe('admin API: buckets and access keys with grants (stand-alone node)', function () {
  this.timeout(60_000);
  let node: StartedNode;
  const clients: S3Client[] = [];
  const as = (k: { accessKeyId: string; secretAccessKey: string }, n = node): S3Client => {
    const c = n.s3Client({ maxAttempts: 1, credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey } });
    clients.push(c);
    return c;
  };
  const secrets: string[] = [];

  before(async () => {
    node = await startNode();
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await cleanupAllNodes();
  });

  it('creates a bucket with its settings and shows it, without an owner key', async () => {
    const r = await admin(node, 'POST', '/v1/buckets', { name: 'med-records', versioning: 'Enabled', objectLock: true });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const b = r.body as BucketInfo;
    assert.deepEqual({ ...b, createdAt: undefined }, { name: 'med-records', owner: null, versioning: 'Enabled', objectLock: true, policy: null, region: node.region, createdAt: undefined });
    assert.deepEqual((await admin(node, 'GET', '/v1/buckets/med-records')).body, b);
    assert.deepEqual((await admin(node, 'GET', '/v1/buckets')).body.buckets.map((x: BucketInfo) => x.name), ['med-records']);
    assert.equal((await admin(node, 'POST', '/v1/buckets', { name: 'med-records' })).status, 409);
  });

  it('a read grant lets a key GET and list, and refuses PUT with AccessDenied', async () => {
    const ownerPut = as({ accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey });
    await admin(node, 'POST', '/v1/buckets', { name: 'med-scans', owner: node.accessKeyId });
    await ownerPut.send(new PutObjectCommand({ Bucket: 'med-scans', Key: 'a.dcm', Body: 'scan' }));
    const k = await createKey(node, [{ bucket: 'med-*', access: 'read' }]);
    secrets.push(k.secretAccessKey);
    assert.match(k.accessKeyId, /^AK[A-Z2-7]{20}$/);
    assert.ok(k.secretAccessKey.length >= 40);
    const c = as(k);
    const got = await c.send(new GetObjectCommand({ Bucket: 'med-scans', Key: 'a.dcm' }));
    assert.equal(await got.Body!.transformToString(), 'scan');
    assert.equal(await outcome(c.send(new PutObjectCommand({ Bucket: 'med-scans', Key: 'b.dcm', Body: 'x' }))), 'AccessDenied');
    const listed = await c.send(new ListBucketsCommand({}));
    assert.deepEqual(listed.Buckets?.map((b) => b.Name), ['med-records', 'med-scans']);
    // The secret is shown once: never by GET.
    const info = (await admin(node, 'GET', `/v1/keys/${k.accessKeyId}`)).body as AccessKeyInfo;
    assert.deepEqual(info.grants, [{ bucket: 'med-*', access: 'read' }]);
    assert.ok(!JSON.stringify(info).includes(k.secretAccessKey));
    assert.ok(!JSON.stringify((await admin(node, 'GET', '/v1/keys')).body).includes(k.secretAccessKey));
  });

  it('a write grant lets a key PUT and DELETE objects but not change the bucket; owner may do all', async () => {
    const k = await createKey(node, [{ bucket: 'med-scans', access: 'write' }]);
    secrets.push(k.secretAccessKey);
    const c = as(k);
    assert.equal(await outcome(c.send(new PutObjectCommand({ Bucket: 'med-scans', Key: 'w.dcm', Body: 'w' }))), 'OK');
    assert.equal(await outcome(c.send(new DeleteObjectCommand({ Bucket: 'med-scans', Key: 'w.dcm' }))), 'OK');
    assert.equal(await outcome(c.send(new PutBucketVersioningCommand({ Bucket: 'med-scans', VersioningConfiguration: { Status: 'Enabled' } }))), 'AccessDenied');
    assert.equal(await outcome(c.send(new PutBucketTaggingCommand({ Bucket: 'med-scans', Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] } }))), 'AccessDenied');
    assert.equal(await outcome(c.send(new PutObjectCommand({ Bucket: 'med-records', Key: 'w', Body: 'w' }))), 'AccessDenied', 'no grant on med-records');

    const r = await admin(node, 'PUT', `/v1/keys/${k.accessKeyId}/grants`, { grants: [{ bucket: 'med-scans', access: 'owner' }] });
    assert.equal(r.status, 200);
    assert.equal(await outcome(c.send(new PutBucketVersioningCommand({ Bucket: 'med-scans', VersioningConfiguration: { Status: 'Enabled' } }))), 'OK');
    assert.equal(await outcome(c.send(new PutBucketTaggingCommand({ Bucket: 'med-scans', Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] } }))), 'OK');
  });

  it('a revoked key is refused as an unknown key, and a config key keeps its own buckets', async () => {
    const k = await createKey(node, [{ bucket: '*', access: 'owner' }]);
    secrets.push(k.secretAccessKey);
    const c = as(k);
    assert.equal(await outcome(c.send(new ListBucketsCommand({}))), 'OK');
    assert.equal((await admin(node, 'DELETE', `/v1/keys/${k.accessKeyId}`)).status, 204);
    assert.equal(await outcome(c.send(new GetObjectCommand({ Bucket: 'med-scans', Key: 'a.dcm' }))), 'InvalidAccessKeyId');
    assert.equal((await admin(node, 'GET', `/v1/keys/${k.accessKeyId}`)).status, 404);
    assert.equal((await admin(node, 'DELETE', `/v1/keys/${k.accessKeyId}`)).status, 404);
    const cfg = as({ accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey });
    await cfg.send(new CreateBucketCommand({ Bucket: 'own-bucket' }));
    assert.equal(await outcome(cfg.send(new PutObjectCommand({ Bucket: 'own-bucket', Key: 'k', Body: 'v' }))), 'OK');
  });

  it('refuses bad input with a status and a readable message, and changes nothing', async () => {
    const before = (await admin(node, 'GET', '/v1/buckets')).body;
    const keysBefore = (await admin(node, 'GET', '/v1/keys')).body;
    const cases: [string, string, unknown, number, RegExp][] = [
      ['POST', '/v1/buckets', { name: 'Bad_Name' }, 400, /invalid bucket name/],
      ['POST', '/v1/buckets', { name: 'ok-name', versioning: 'Sometimes' }, 400, /versioning must be/],
      ['POST', '/v1/buckets', { name: 'ok-name', colour: 'red' }, 400, /unknown fields: colour/],
      ['POST', '/v1/buckets', { name: 'ok-name', objectLock: true, versioning: 'Suspended' }, 422, /object lock needs versioning Enabled/],
      ['POST', '/v1/buckets', { name: 'ok-name', owner: 'AKNOSUCHKEY' }, 422, /not an access key/],
      ['POST', '/v1/buckets', { name: 'ok-name', policy: 'fast' }, 422, /not part of a grid/],
      ['POST', '/v1/keys', { name: '', grants: [] }, 400, /name must be/],
      ['POST', '/v1/keys', { name: 'x', grants: [{ bucket: 'med', access: 'admin' }] }, 400, /access must be read, write or owner/],
      ['PUT', `/v1/keys/${node.accessKeyId}/grants`, {}, 400, /grants is required/],
      ['PUT', '/v1/keys/AKNOSUCHKEY/grants', { grants: [] }, 404, /no access key/],
      ['DELETE', '/v1/buckets/no-such-bucket', undefined, 404, /no bucket/],
      ['DELETE', '/v1/buckets/med-scans', undefined, 409, /not empty/i],
    ];
    for (const [method, path, body, status, message] of cases) {
      const r = await admin(node, method, path, body);
      assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, message, `${method} ${path}`);
    }
    assert.deepEqual((await admin(node, 'GET', '/v1/buckets')).body, before);
    assert.deepEqual((await admin(node, 'GET', '/v1/keys')).body, keysBefore);
    const noToken = await send(node.host, node.adminPort, 'GET', '/v1/keys', {}, undefined);
    assert.equal(noToken.status, 401);
  });

  it('deletes an empty bucket', async () => {
    assert.equal((await admin(node, 'POST', '/v1/buckets', { name: 'scratch' })).status, 201);
    assert.equal((await admin(node, 'DELETE', '/v1/buckets/scratch')).status, 204);
    assert.equal((await admin(node, 'GET', '/v1/buckets/scratch')).status, 404);
  });

  it('never writes a secret to the node log', () => {
    const log = node.logs();
    assert.match(log, /access key created/);
    for (const s of secrets) assert.ok(!log.includes(s), 'a secret is in the log');
  });
});

describe('admin API in a grid: keys and buckets reach every node', function () {
  this.timeout(120_000);
  let grid: TestGrid;
  const clients: S3Client[] = [];
  const as = (k: { accessKeyId: string; secretAccessKey: string }, n: StartedNode): S3Client => {
    const c = n.s3Client({ maxAttempts: 1, credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey } });
    clients.push(c);
    return c;
  };

  before(async () => {
    grid = await startGridNodes([{ site: 'dc1', host: '127.0.0.71' }, { site: 'dc2', host: '127.0.0.72' }, { site: 'dc3', host: '127.0.0.73' }], { scrub: { enabled: false } });
    const layout = grid.layout(1, {
      policies: [
        { name: 'default', match: { buckets: ['*'] }, rules: [{ site: 'dc1', copies: 1 }, { site: 'dc2', copies: 1 }, { site: 'dc3', copies: 1 }], ingest: 'balanced' },
        { name: 'dc1-only', match: { buckets: ['never-*'] }, rules: [{ site: 'dc1', copies: 1 }], ingest: 'balanced' },
      ],
    });
    for (const n of grid.nodes) assert.equal((await applyLayout(n, layout)).status, 200);
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await cleanupAllNodes();
  });

  it('a bucket created with a bound policy appears on every node with its policy; an unknown policy is refused', async () => {
    const [a, b, c] = grid.nodes;
    const r = await admin(a, 'POST', '/v1/buckets', { name: 'bound', policy: 'dc1-only', owner: grid.key.accessKeyId });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.policy, 'dc1-only');
    for (const n of [b, c]) {
      const info = await waitFor(`bucket on ${n.nodeId}`, async () => {
        const g = await admin(n, 'GET', '/v1/buckets/bound');
        return g.status === 200 ? (g.body as BucketInfo) : undefined;
      }, 15_000);
      assert.equal(info.policy, 'dc1-only');
    }
    const unknown = await admin(b, 'POST', '/v1/buckets', { name: 'other', policy: 'nope' });
    assert.equal(unknown.status, 422);
    assert.match(unknown.body.error.message, /policy nope is not in the layout/);
  });

  it('a key created on node A works on node C shortly after, and a revoke on C stops it on A', async () => {
    const [a, , c] = grid.nodes;
    await as(grid.key, a).send(new PutObjectCommand({ Bucket: 'bound', Key: 'x', Body: 'payload' }));
    const k = await createKey(a, [{ bucket: 'bound', access: 'read' }]);
    const onC = as(k, c);
    await waitFor('the key to work on C', async () => (await outcome(onC.send(new GetObjectCommand({ Bucket: 'bound', Key: 'x' })))) === 'OK', 15_000, 200);
    assert.equal(await outcome(onC.send(new PutObjectCommand({ Bucket: 'bound', Key: 'y', Body: 'no' }))), 'AccessDenied');
    const onA = as(k, a);
    assert.equal(await outcome(onA.send(new GetObjectCommand({ Bucket: 'bound', Key: 'x' }))), 'OK');
    assert.equal((await admin(c, 'DELETE', `/v1/keys/${k.accessKeyId}`)).status, 204);
    await waitFor('the key to be refused on A', async () => (await outcome(onA.send(new GetObjectCommand({ Bucket: 'bound', Key: 'x' })))) === 'InvalidAccessKeyId', 15_000, 200);
    for (const n of grid.nodes) assert.ok(!n.logs().includes(k.secretAccessKey), `a secret is in the log of ${n.nodeId}`);
  });
});
