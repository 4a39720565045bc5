// The operator end to end on the real control plane: the CRDs, `archipel operator` as a process,
// the three-site samples (one node per pool) → StatefulSets, Services, PDBs, the grid Secret; the
// storage pods (real `archipel node` processes of this build) Ready and holding one layout that
// lists them all; the Grid Ready; a Bucket whose Secret's credentials work with the AWS SDK (and are
// replaced when the Secret is lost); `kubectl scale nodepool` out (with the operator killed midway)
// and back in (drain first); a lost site reported and back; deletionPolicy Delete refused under
// retention, done otherwise. The tests run in order and share the grid.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { skipWithoutKubeBinaries } from './binaries';
import { freeLoopbackPort } from './control-plane';
import { archipelImages, KubeCluster, startKubeCluster, storageNodeImage } from './kube-cluster';
import { waitFor } from './kube-client';
import { GroupProcess, spawnGroup } from './processes';
import { DEFAULTS } from '../../operator/src/api/types';

const ns = 'storage';
const group = 'storage.archipel.io';
const crdPath = (plural: string): string => `/apis/${group}/v1alpha1/namespaces/${ns}/${plural}`;
const sites = ['dc1', 'dc2', 'dc3'];
const pools = sites.map((s) => `${s}-pool`);

/** The folder holding package.json and crds/, from wherever the compiled test sits. */
function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'crds'))) return dir;
  }
  throw new Error(`repository root not found above ${__dirname}`);
}

const b64d = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

async function adminGet(ip: string, port: number, token: string, urlPath: string): Promise<any> {
  const res = await fetch(`http://${ip}:${port}${urlPath}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3_000) });
  if (res.status !== 200) throw new Error(`${urlPath} on ${ip}: ${res.status}`);
  return res.json();
}

describe('operator end to end (three sites on a real control plane)', function () {
  this.timeout(600_000);
  let cluster: KubeCluster | undefined;
  let workDir = '';
  let operator: GroupProcess | undefined;
  let operatorLog = '';

  const client = () => cluster!.controlPlane.client;
  const tail = (): string => (fs.existsSync(operatorLog) ? fs.readFileSync(operatorLog, 'utf8').split('\n').slice(-15).join('\n') : '');
  const wait = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> =>
    waitFor(what, async () => {
      if (operator && !operator.isRunning()) throw new Error('the operator exited');
      return probe();
    }, timeoutMs, 500).catch((err: Error) => {
      throw new Error(`${err.message}\noperator log:\n${tail()}`);
    });
  const storagePods = async (): Promise<any[]> =>
    (await client().get<any>(`/api/v1/namespaces/${ns}/pods?labelSelector=app.kubernetes.io/component%3Dstorage-node`)).items;
  const isReady = (pod: any): boolean => (pod.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True');
  const bucketEnv = async (secretName: string): Promise<Record<string, string>> => {
    const secret = await wait(`Secret ${secretName}`, () => client().getOptional<any>(`/api/v1/namespaces/${ns}/secrets/${secretName}`), 120_000);
    return Object.fromEntries(Object.entries(secret.data as Record<string, string>).map(([k, v]) => [k, b64d(v)]));
  };
  /** No kube-proxy here: a Service's endpoint is reached at a Ready pod's address. */
  const s3For = async (env: Record<string, string>): Promise<S3Client> => {
    const pod = (await storagePods()).find(isReady);
    return new S3Client({
      endpoint: `http://${pod.status.podIP}:${env.BUCKET_PORT}`, region: env.AWS_REGION, forcePathStyle: true,
      credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    });
  };
  const condition = (obj: any, type: string): any => (obj.status?.conditions ?? []).find((c: any) => c.type === type);
  const adminToken = async (): Promise<string> => b64d((await client().get<any>(`/api/v1/namespaces/${ns}/secrets/demo-admin`)).data['admin-token']);

  /** `archipel operator` of this build, logging to operatorLog (appended to across restarts). */
  async function startOperator(): Promise<void> {
    const port = await freeLoopbackPort();
    operator = spawnGroup(process.execPath, {
      args: [
        path.resolve(__dirname, '..', '..', 'cli', 'archipel.js'), 'operator',
        '--kubeconfig', cluster!.controlPlane.kubeconfigPath,
        '--namespace', ns, '--no-leader-election', '--log-level', 'debug',
        '--metrics-address', '127.0.0.1', '--metrics-port', String(port),
      ],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workDir },
      cwd: workDir,
      logPath: operatorLog,
    });
  }

  before(async function () {
    skipWithoutKubeBinaries(this);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-operator-e2e-'));
    const outDir = path.resolve(__dirname, '..', '..');
    const images = archipelImages(outDir);
    // The Grid's default image, as the samples leave it, runs the same build.
    images[DEFAULTS.image.replace(/:[^:/]+$/, '')] = images[storageNodeImage];
    cluster = await startKubeCluster({ sites, images, controlPlane: { startTimeoutMs: 60_000 } });
    const root = repoRoot();
    await cluster.controlPlane.kubectl(['apply', '--server-side', '-f', path.join(root, 'crds')]);
    await cluster.controlPlane.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=archipel']);
    await client().create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });

    operatorLog = path.join(workDir, 'operator.log');
    await startOperator();
    // The samples with one node per pool, to keep the machine light.
    const samples = fs.readFileSync(path.join(root, 'crds', 'samples', 'three-sites.yaml'), 'utf8').replace(/replicas: 2/g, 'replicas: 1');
    const file = path.join(workDir, 'three-sites.yaml');
    fs.writeFileSync(file, samples);
    await cluster.controlPlane.kubectl(['apply', '--server-side', '-n', ns, '-f', file]);
  });

  after(async () => {
    if (operator) await operator.stop(5_000);
    await cluster?.stop();
    if (workDir && process.env.ARCHIPEL_KUBE_KEEP !== '1') fs.rmSync(workDir, { recursive: true, force: true });
    else if (workDir) console.log(`    kept ${workDir}`);
  });

  it('creates the grid Secret, ConfigMap, Services, PDBs and one StatefulSet per NodePool, owned by the Grid or the pool', async () => {
    const sets = await wait('three StatefulSets', async () => {
      const list = (await client().get<any>(`/apis/apps/v1/namespaces/${ns}/statefulsets`)).items;
      return list.length === 3 ? list : undefined;
    }, 60_000);
    for (const sts of sets) {
      assert.ok(pools.includes(sts.metadata.name), sts.metadata.name);
      assert.equal(sts.spec.replicas, 1);
      assert.equal(sts.spec.serviceName, 'demo-nodes');
      assert.equal(sts.metadata.ownerReferences[0].kind, 'NodePool');
      assert.equal(sts.metadata.managedFields.some((f: any) => f.manager === 'archipel-operator' && f.operation === 'Apply'), true);
    }
    const services = (await client().get<any>(`/api/v1/namespaces/${ns}/services`)).items.map((s: any) => s.metadata.name).sort();
    assert.deepEqual(services, ['demo-dc1-s3', 'demo-dc2-s3', 'demo-dc3-s3', 'demo-nodes', 'demo-s3']);
    const headless = await client().get<any>(`/api/v1/namespaces/${ns}/services/demo-nodes`);
    assert.equal(headless.spec.clusterIP, 'None');
    const pdbs = (await client().get<any>(`/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`)).items.map((p: any) => p.metadata.name).sort();
    assert.deepEqual(pdbs, ['demo-dc1', 'demo-dc2', 'demo-dc3']);
    const secret = await client().get<any>(`/api/v1/namespaces/${ns}/secrets/demo-admin`);
    assert.ok(b64d(secret.data['grid-secret']).length >= 32);
    assert.ok(b64d(secret.data['admin-token']).length >= 16);
    assert.equal(secret.metadata.ownerReferences[0].kind, 'Grid');
    const cm = await client().get<any>(`/api/v1/namespaces/${ns}/configmaps/demo-config`);
    assert.match(cm.data['node.yaml'], /grid:/);
  });

  it('brings every storage pod to Ready with one layout that lists them all, and the Grid to Ready', async () => {
    const pods = await wait('three storage pods Ready', async () => {
      const list = await storagePods();
      return list.length === 3 && list.every(isReady) ? list : undefined;
    }, 300_000);
    const token = await adminToken();
    const layouts = await Promise.all(pods.map((p) => adminGet(p.status.podIP, 9001, token, '/v1/layout')));
    const versions = new Set(layouts.map((l) => l.layout.version));
    assert.equal(versions.size, 1, `every pod holds the same version: ${[...versions].join(', ')}`);
    const ids = layouts[0].layout.nodes.map((n: any) => n.id).sort();
    assert.deepEqual(ids, pods.map((p) => p.metadata.name).sort());
    for (const l of layouts) assert.deepEqual(l.layout, layouts[0].layout);
    const grid = await wait('Grid Ready', async () => {
      const g = await client().get<any>(`${crdPath('grids')}/demo`);
      return g.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') ? g : undefined;
    }, 60_000);
    assert.equal(grid.status.phase, 'Ready');
    assert.equal(grid.status.readyNodes, 3);
    assert.equal(grid.status.observedGeneration, grid.metadata.generation);
    const pool = await client().get<any>(`${crdPath('nodepools')}/dc1-pool`);
    assert.equal(pool.status.readyReplicas, 1);
    assert.match(pool.status.selector, /storage.archipel.io\/pool=dc1-pool/);
    assert.deepEqual(pool.status.nodes, [{ id: 'dc1-pool-0', state: 'active', ready: true }]);
    const site = await client().get<any>(`${crdPath('sites')}/dc3`);
    assert.equal(site.status.phase, 'Available');
    const policy = await client().get<any>(`${crdPath('replicationpolicies')}/default`);
    assert.equal(condition(policy, 'Ready').status, 'True');
    // What a user sees with kubectl describe grid demo.
    const events = (await client().get<any>(`/api/v1/namespaces/${ns}/events`)).items.filter((e: any) => e.involvedObject.kind === 'Grid');
    const reasons = events.map((e: any) => e.reason);
    assert.ok(reasons.includes('SecretCreated') && reasons.includes('LayoutApplied'), reasons.join(', '));
  });

  it('gives a Bucket a Secret whose credentials PUT, GET and LIST through a storage pod with the AWS SDK', async () => {
    await client().create(crdPath('buckets'), {
      apiVersion: `${group}/v1alpha1`, kind: 'Bucket', metadata: { name: 'e2e' },
      spec: { grid: 'demo', bucketName: 'e2e-data', policy: 'default', grants: ['write'] },
    });
    const env = await bucketEnv('e2e-data-s3');
    assert.equal(env.BUCKET_NAME, 'e2e-data');
    assert.equal(env.AWS_ENDPOINT_URL, `http://demo-s3.${ns}.svc.cluster.local:9000`);
    const s3 = await s3For(env);
    try {
      await s3.send(new PutObjectCommand({ Bucket: env.BUCKET_NAME, Key: 'hello.txt', Body: 'hello from kubernetes' }));
      const got = await s3.send(new GetObjectCommand({ Bucket: env.BUCKET_NAME, Key: 'hello.txt' }));
      assert.equal(await got.Body!.transformToString(), 'hello from kubernetes');
      const list = await s3.send(new ListObjectsV2Command({ Bucket: env.BUCKET_NAME }));
      assert.deepEqual((list.Contents ?? []).map((o) => o.Key), ['hello.txt']);
    } finally {
      s3.destroy();
    }
    const bucket = await wait('Bucket Ready', async () => {
      const b = await client().get<any>(`${crdPath('buckets')}/e2e`);
      return b.status?.phase === 'Ready' ? b : undefined;
    }, 30_000);
    assert.equal(bucket.status.accessKeyId, env.AWS_ACCESS_KEY_ID);
    assert.deepEqual(bucket.metadata.finalizers, ['storage.archipel.io/bucket']);
  });

  it('replaces lost Bucket credentials: a new key in a new Secret, the old key revoked', async () => {
    const before = await bucketEnv('e2e-data-s3');
    await client().delete(`/api/v1/namespaces/${ns}/secrets/e2e-data-s3`);
    const after = await wait('a new Secret with another key', async () => {
      const secret = await client().getOptional<any>(`/api/v1/namespaces/${ns}/secrets/e2e-data-s3`);
      const id = secret ? b64d(secret.data.AWS_ACCESS_KEY_ID) : undefined;
      return id && id !== before.AWS_ACCESS_KEY_ID ? secret : undefined;
    }, 60_000);
    const pod = (await storagePods()).find(isReady);
    const token = await adminToken();
    await wait('the old key revoked', async () => {
      const res = await fetch(`http://${pod.status.podIP}:9001/v1/keys/${before.AWS_ACCESS_KEY_ID}`, { headers: { authorization: `Bearer ${token}` } });
      return res.status === 404 ? true : undefined;
    }, 30_000);
    const env = Object.fromEntries(Object.entries(after.data as Record<string, string>).map(([k, v]) => [k, b64d(v)]));
    const s3 = await s3For(env);
    try {
      const got = await s3.send(new GetObjectCommand({ Bucket: env.BUCKET_NAME, Key: 'hello.txt' }));
      assert.equal(await got.Body!.transformToString(), 'hello from kubernetes');
    } finally {
      s3.destroy();
    }
  });

  it('kubectl scale nodepool adds a node: its pod joins the layout and the NodePool status shows it, even when the operator is killed midway', async () => {
    await cluster!.controlPlane.kubectl(['scale', '-n', ns, 'nodepool/dc1-pool', '--replicas=2']);
    // Killed once the StatefulSet follows, before the new node is in the layout; a new operator finishes the job.
    await wait('StatefulSet dc1-pool at 2 replicas', async () => {
      const sts = await client().get<any>(`/apis/apps/v1/namespaces/${ns}/statefulsets/dc1-pool`);
      return sts.spec.replicas === 2 ? true : undefined;
    }, 60_000);
    operator!.signal('SIGKILL');
    await operator!.exited;
    await startOperator();
    const pool = await wait('dc1-pool with 2 ready nodes in its status', async () => {
      const p = await client().get<any>(`${crdPath('nodepools')}/dc1-pool`);
      const nodes = p.status?.nodes ?? [];
      return p.status?.readyReplicas === 2 && nodes.length === 2 && nodes.every((n: any) => n.ready && n.state === 'active') ? p : undefined;
    }, 300_000);
    assert.equal(pool.status.replicas, 2);
    const token = await adminToken();
    const pods = await storagePods();
    assert.equal(pods.length, 4);
    const layouts = await Promise.all(pods.filter(isReady).map((p) => adminGet(p.status.podIP, 9001, token, '/v1/layout')));
    const newest = Math.max(...layouts.map((l) => l.layout.version));
    const layout = layouts.find((l) => l.layout.version === newest).layout;
    assert.ok(layout.nodes.some((n: any) => n.id === 'dc1-pool-1' && n.state === 'active'), JSON.stringify(layout.nodes));
    // The layout with the new node was applied by the operator started after the kill.
    const lines = fs.readFileSync(operatorLog, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const restartedAt = lines.map((l) => l.message).lastIndexOf('operator starting');
    const joined = lines.findIndex((l) => l.message === 'layout applied' && l.nodes === 4);
    assert.ok(restartedAt > 0 && joined > restartedAt, 'the new node joined under the restarted operator');
  });

  it('scaling a NodePool back in drains the node first, takes it out of the layout, then removes its pod', async () => {
    await cluster!.controlPlane.kubectl(['scale', '-n', ns, 'nodepool/dc1-pool', '--replicas=1']);
    const pool = await wait('dc1-pool back to one node', async () => {
      const p = await client().get<any>(`${crdPath('nodepools')}/dc1-pool`);
      const pods = (await storagePods()).filter((x) => x.metadata.name.startsWith('dc1-pool-'));
      return pods.length === 1 && p.status?.nodes?.length === 1 && p.status.replicas === 1 ? p : undefined;
    }, 300_000);
    assert.deepEqual(pool.status.nodes, [{ id: 'dc1-pool-0', state: 'active', ready: true }]);
    const token = await adminToken();
    const pods = (await storagePods()).filter(isReady);
    const layouts = await Promise.all(pods.map((p) => adminGet(p.status.podIP, 9001, token, '/v1/layout')));
    for (const l of layouts) assert.ok(!l.layout.nodes.some((n: any) => n.id === 'dc1-pool-1'), JSON.stringify(l.layout.nodes));
    // The object written before is still there.
    const env = await bucketEnv('e2e-data-s3');
    const s3 = await s3For(env);
    try {
      const got = await s3.send(new GetObjectCommand({ Bucket: env.BUCKET_NAME, Key: 'hello.txt' }));
      assert.equal(await got.Body!.transformToString(), 'hello from kubernetes');
    } finally {
      s3.destroy();
    }
  });

  it('reports a lost site on the Grid and the Site within 30 s while the other sites serve, and Ready again once it returns', async () => {
    const lostMs = Date.now();
    await cluster!.agent.loseSite('dc3');
    const grid = await wait('SiteUnavailable on the Grid', async () => {
      const g = await client().get<any>(`${crdPath('grids')}/demo`);
      return condition(g, 'SiteUnavailable')?.status === 'True' ? g : undefined;
    }, 30_000);
    console.log(`    site loss reported ${Date.now() - lostMs} ms after the kill`);
    assert.match(condition(grid, 'SiteUnavailable').message, /dc3/);
    assert.equal(grid.status.phase, 'Degraded');
    const site = await client().get<any>(`${crdPath('sites')}/dc3`);
    assert.equal(site.status.phase, 'Unavailable');
    // Clients of the other sites keep working (balanced ingest).
    const env = await bucketEnv('e2e-data-s3');
    const s3 = await s3For(env);
    try {
      await s3.send(new PutObjectCommand({ Bucket: env.BUCKET_NAME, Key: 'while-dc3-is-down.txt', Body: 'still here' }));
      const got = await s3.send(new GetObjectCommand({ Bucket: env.BUCKET_NAME, Key: 'while-dc3-is-down.txt' }));
      assert.equal(await got.Body!.transformToString(), 'still here');
    } finally {
      s3.destroy();
    }
    await cluster!.agent.restoreSite('dc3');
    const back = await wait('Grid Ready again', async () => {
      const g = await client().get<any>(`${crdPath('grids')}/demo`);
      return condition(g, 'Ready')?.status === 'True' && condition(g, 'SiteUnavailable')?.status === 'False' ? g : undefined;
    }, 180_000).catch(async (e: Error) => {
      const g = await client().get<any>(`${crdPath('grids')}/demo`).catch(() => undefined);
      throw new Error(`${e.message}\nGrid status: ${JSON.stringify(g?.status)}`);
    });
    assert.equal(back.status.phase, 'Ready');
  });

  it('applies the sample Bucket with its default COMPLIANCE retention, and refuses to delete it (deletionPolicy Delete) while an object is under retention', async () => {
    await cluster!.controlPlane.kubectl(['apply', '--server-side', '-n', ns, '-f', path.join(repoRoot(), 'crds', 'samples', 'bucket.yaml')]);
    const env = await bucketEnv('records-s3');
    const s3 = await s3For(env);
    try {
      await s3.send(new PutObjectCommand({ Bucket: 'records', Key: 'patient-1.json', Body: '{}' }));
      const head = await s3.send(new HeadObjectCommand({ Bucket: 'records', Key: 'patient-1.json' }));
      assert.equal(head.ObjectLockMode, 'COMPLIANCE');
      assert.ok(head.ObjectLockRetainUntilDate && head.ObjectLockRetainUntilDate.getTime() > Date.now() + 29 * 86_400_000);
    } finally {
      s3.destroy();
    }
    await client().patch(`${crdPath('buckets')}/records`, { spec: { deletionPolicy: 'Delete' } });
    await client().delete(`${crdPath('buckets')}/records`);
    const refused = await wait('Bucket records refusing deletion', async () => {
      const b = await client().getOptional<any>(`${crdPath('buckets')}/records`);
      return b && condition(b, 'Degraded')?.reason === 'ObjectsUnderRetention' ? b : undefined;
    }, 60_000);
    assert.equal(refused.status.phase, 'Deleting');
    assert.match(condition(refused, 'Degraded').message, /1 object version of bucket records cannot be deleted/);
  });

  it('deletes a Bucket with deletionPolicy Delete: its objects, the bucket and the Bucket go away', async () => {
    await client().patch(`${crdPath('buckets')}/e2e`, { spec: { deletionPolicy: 'Delete' } });
    await client().delete(`${crdPath('buckets')}/e2e`);
    await wait('Bucket e2e gone', async () => ((await client().getOptional(`${crdPath('buckets')}/e2e`)) === undefined ? true : undefined), 60_000);
    const pod = (await storagePods()).find(isReady);
    const res = await fetch(`http://${pod.status.podIP}:9001/v1/buckets/e2e-data`, { headers: { authorization: `Bearer ${await adminToken()}` } });
    assert.equal(res.status, 404);
  });
});
