// The test Kubernetes cluster itself: real control plane, StatefulSets run as local processes.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { kubeVersion, skipWithoutKubeBinaries } from './binaries';
import { KubeObject, waitFor } from './kube-client';
import { KubeCluster, startKubeCluster } from './kube-cluster';
import { aliveGroups, describeGroup, listeningSockets } from './leak-check';
import { zoneLabel } from './node-agent';

const sites = ['site-a', 'site-b', 'site-c'];
const ns = 'default';
const echoImage = 'archipel/test-echo:1.0';
const podIpPrefix = '127.77';

function getJson(ip: string, port: number, urlPath = '/'): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ip, port, path: urlPath, timeout: 2_000, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as Record<string, unknown>);
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function isReady(pod: KubeObject): boolean {
  return pod.status?.phase === 'Running' &&
    (pod.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
}

function statefulSet(name: string, replicas: number, allowedSites: string[]): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace: ns },
    spec: {
      replicas,
      serviceName: name,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 5,
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [{ matchExpressions: [{ key: zoneLabel, operator: 'In', values: allowedSites }] }],
              },
            },
          },
          containers: [
            {
              name: 'echo',
              image: echoImage,
              args: ['--port', '8080', '--data', '/data/$(POD_NAME)'],
              ports: [{ name: 'http', containerPort: 8080 }],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'SECRET_VALUE', valueFrom: { secretKeyRef: { name: 'echo-secret', key: 'token' } } },
                { name: 'CONFIG_VALUE', valueFrom: { configMapKeyRef: { name: 'echo-config', key: 'colour' } } },
                { name: 'GREETING', value: 'hello $(POD_NAME)' },
              ],
              readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 1, failureThreshold: 1 },
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
            },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data' },
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        },
      ],
    },
  };
}

describe('test Kubernetes cluster (real control plane, pods as local processes)', function () {
  this.timeout(300_000);
  let cluster: KubeCluster | undefined;
  const pgids = new Set<number>();
  let controlPlanePorts: number[] = [];

  const client = () => cluster!.controlPlane.client;
  const listPods = async (app: string): Promise<KubeObject[]> =>
    (await client().list(`/api/v1/namespaces/${ns}/pods?labelSelector=app%3D${app}`)).items;
  const rememberPids = (): void => {
    if (!cluster) return;
    for (const pid of cluster.controlPlane.pids()) pgids.add(pid);
    for (const pod of cluster.agent.runningPods()) for (const pid of pod.pids) pgids.add(pid);
  };
  /** Waits until exactly `count` pods of `app` are Ready and answer on their pod IPs. */
  const waitReadyPods = (app: string, count: number, timeoutMs = 90_000): Promise<KubeObject[]> =>
    waitFor(`${count} ready ${app} pods (agent: ${cluster?.agent.error ?? 'ok'})`, async () => {
      const pods = await listPods(app);
      if (pods.length !== count || !pods.every(isReady) || pods.some((p) => p.metadata.deletionTimestamp)) return undefined;
      rememberPids();
      return pods;
    }, timeoutMs, 250);

  before(async function () {
    skipWithoutKubeBinaries(this);
    const startedMs = Date.now();
    cluster = await startKubeCluster({
      sites,
      podIpPrefix,
      images: {
        'archipel/test-echo': [process.execPath, path.join(__dirname, 'fixtures', 'echo-server.js')],
        'tools/sh': { entrypoint: ['/bin/sh'], executables: { sh: ['/bin/sh'] } },
      },
      backoff: { initialBackoffMs: 500, maxBackoffMs: 5_000 },
      controlPlane: { startTimeoutMs: 60_000 },
    });
    const startMs = Date.now() - startedMs;
    console.log(`    control plane and nodes started in ${startMs} ms`);
    assert.ok(startMs < 30_000, `control plane start took ${startMs} ms (limit 30 s)`);
    controlPlanePorts = cluster.controlPlane.endpoints.ports;
    rememberPids();
    await client().create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'echo-secret' },
      data: { token: Buffer.from('s3cr3t').toString('base64') },
    });
    await client().create(`/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'echo-config' }, data: { colour: 'teal' },
    });
  });

  after(async () => {
    rememberPids();
    await cluster?.stop();
  });

  it('serves the API to kubectl with the built version and the site nodes Ready', async () => {
    const version = JSON.parse(await cluster!.controlPlane.kubectl(['version', '-o', 'json']));
    assert.equal(version.serverVersion.gitVersion, kubeVersion);
    assert.equal(version.clientVersion.gitVersion, kubeVersion);
    const nodes = await waitFor('nodes Ready without the not-ready taint', async () => {
      const list = JSON.parse(await cluster!.controlPlane.kubectl(['get', 'nodes', '-o', 'json'])).items as KubeObject[];
      const ok = list.length === sites.length && list.every((n) =>
        n.status.conditions.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') &&
        !(n.spec.taints ?? []).some((t: { key: string }) => t.key === 'node.kubernetes.io/not-ready'));
      return ok ? list : undefined;
    }, 30_000);
    assert.deepEqual(nodes.map((n) => n.metadata.labels?.[zoneLabel]).sort(), sites);
    const table = await cluster!.controlPlane.kubectl(['get', 'nodes']);
    assert.match(table, /site-a-node-0\s+Ready/);
  });

  it('installs and uninstalls a Helm chart with the built helm', async () => {
    const chartDir = path.join(cluster!.controlPlane.dir, 'charts', 'demo');
    fs.mkdirSync(path.join(chartDir, 'templates'), { recursive: true });
    fs.writeFileSync(path.join(chartDir, 'Chart.yaml'), 'apiVersion: v2\nname: demo\nversion: 0.1.0\n');
    fs.writeFileSync(path.join(chartDir, 'values.yaml'), 'colour: blue\n');
    fs.writeFileSync(path.join(chartDir, 'templates', 'cm.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  colour: {{ .Values.colour | quote }}\n');
    assert.match(await cluster!.controlPlane.helm(['version', '--short']), /^v3\./);
    await cluster!.controlPlane.helm(['install', 'demo', chartDir, '--namespace', ns, '--set', 'colour=green', '--wait', '--timeout', '60s']);
    const cm = await client().get(`/api/v1/namespaces/${ns}/configmaps/demo-settings`);
    assert.equal(cm.data.colour, 'green');
    await cluster!.controlPlane.helm(['uninstall', 'demo', '--namespace', ns, '--wait']);
    assert.equal(await client().getOptional(`/api/v1/namespaces/${ns}/configmaps/demo-settings`), undefined);
  });

  it('runs a StatefulSet with volume claims as real processes on the nodes of the allowed sites', async () => {
    await client().create(`/apis/apps/v1/namespaces/${ns}/statefulsets`, statefulSet('echo', 3, ['site-a', 'site-b']));
    const pods = await waitReadyPods('echo', 3);
    const nodes = (await client().list('/api/v1/nodes')).items;
    const zoneOf = new Map(nodes.map((n) => [n.metadata.name, n.metadata.labels?.[zoneLabel]]));
    for (const pod of pods) {
      assert.ok(['site-a', 'site-b'].includes(zoneOf.get(pod.spec.nodeName) ?? ''), `${pod.metadata.name} on ${pod.spec.nodeName}`);
      assert.ok(pod.status.podIP.startsWith(`${podIpPrefix}.`), pod.status.podIP);
      const reply = await getJson(pod.status.podIP, 8080);
      assert.equal(reply.podName, pod.metadata.name);
      assert.equal(reply.podIP, pod.status.podIP);
      assert.equal(reply.nodeName, pod.spec.nodeName);
      assert.equal(reply.namespace, ns);
      assert.equal(reply.secretValue, 's3cr3t');
      assert.equal(reply.configValue, 'teal');
      assert.equal(reply.greeting, `hello ${pod.metadata.name}`);
      assert.ok(String(reply.dataDir).startsWith(cluster!.agent.dir), `volume mapped to a local folder: ${reply.dataDir}`);
    }
    const claims = (await client().list(`/api/v1/namespaces/${ns}/persistentvolumeclaims`)).items;
    assert.equal(claims.filter((c) => c.status?.phase === 'Bound').length, 3);
  });

  it('brings a deleted pod back with the same volume and its data', async () => {
    const before = (await listPods('echo')).find((p) => p.metadata.name === 'echo-1')!;
    const first = await getJson(before.status.podIP, 8080);
    await client().delete(`/api/v1/namespaces/${ns}/pods/echo-1`);
    const pods = await waitFor('echo-1 recreated and ready', async () => {
      const list = await listPods('echo');
      const pod = list.find((p) => p.metadata.name === 'echo-1');
      return pod && pod.metadata.uid !== before.metadata.uid && isReady(pod) && list.length === 3 ? list : undefined;
    }, 90_000, 250);
    const after = pods.find((p) => p.metadata.name === 'echo-1')!;
    const second = await getJson(after.status.podIP, 8080);
    assert.equal(second.identity, first.identity);
    assert.equal(second.starts, Number(first.starts) + 1);
    assert.notEqual(second.pid, first.pid);
    assert.deepEqual(aliveGroups([Number(first.pid)]), [], 'old process is gone');
  });

  it('restarts a crashed container and counts the restart', async () => {
    const pod = (await listPods('echo')).find((p) => p.metadata.name === 'echo-0')!;
    const reply = await getJson(pod.status.podIP, 8080);
    process.kill(Number(reply.pid), 'SIGKILL');
    const restarted = await waitFor('echo-0 restarted', async () => {
      const p = (await listPods('echo')).find((x) => x.metadata.name === 'echo-0');
      return p && isReady(p) && p.status.containerStatuses?.[0]?.restartCount === 1 ? p : undefined;
    }, 30_000, 200);
    assert.equal(restarted.metadata.uid, pod.metadata.uid, 'same pod, new container');
    assert.equal(restarted.status.containerStatuses[0].lastState.terminated.exitCode, 137);
    const again = await getJson(restarted.status.podIP, 8080);
    assert.notEqual(again.pid, reply.pid);
  });

  it('adds and removes processes when the StatefulSet is scaled', async () => {
    await client().patch(`/apis/apps/v1/namespaces/${ns}/statefulsets/echo/scale`, { spec: { replicas: 5 } });
    const five = await waitReadyPods('echo', 5);
    await Promise.all(five.map(async (p) => assert.equal((await getJson(p.status.podIP, 8080)).podName, p.metadata.name)));
    const echoProcesses = (): number => cluster!.agent.runningPods().filter((p) => p.name.startsWith('echo-')).length;
    assert.equal(echoProcesses(), 5);
    const removed = five.filter((p) => ['echo-3', 'echo-4'].includes(p.metadata.name));
    const removedPids = cluster!.agent.runningPods().filter((p) => ['echo-3', 'echo-4'].includes(p.name)).flatMap((p) => p.pids);
    await client().patch(`/apis/apps/v1/namespaces/${ns}/statefulsets/echo/scale`, { spec: { replicas: 3 } });
    await waitReadyPods('echo', 3);
    await waitFor('scaled-down processes gone', () => echoProcesses() === 3 && aliveGroups(removedPids).length === 0, 30_000);
    for (const p of removed) {
      await assert.rejects(getJson(p.status.podIP, 8080), 'removed pod no longer answers');
    }
  });

  it('loses a site (processes killed, nodes NotReady) and restores it', async () => {
    const pods = await waitReadyPods('echo', 3);
    const onA = pods.filter((p) => p.spec.nodeName === 'site-a-node-0');
    assert.ok(onA.length > 0, 'some pods run on site-a');
    const pidsOnA = cluster!.agent.runningPods().filter((p) => p.nodeName === 'site-a-node-0').flatMap((p) => p.pids);
    await cluster!.agent.loseSite('site-a');
    assert.deepEqual(aliveGroups(pidsOnA), [], 'every process of the site is dead');
    for (const p of onA) await assert.rejects(getJson(p.status.podIP, 8080));
    await waitFor('site-a node NotReady and its pods not ready', async () => {
      const node = await client().get('/api/v1/nodes/site-a-node-0');
      const ready = node.status.conditions.find((c: { type: string }) => c.type === 'Ready');
      const list = await listPods('echo');
      const podsDown = list.filter((p) => p.spec.nodeName === 'site-a-node-0').every((p) => !isReady(p));
      return ready.status !== 'True' && podsDown;
    }, 30_000);
    const others = (await listPods('echo')).filter((p) => p.spec.nodeName !== 'site-a-node-0');
    for (const p of others) assert.equal((await getJson(p.status.podIP, 8080)).podName, p.metadata.name);

    await cluster!.agent.restoreSite('site-a');
    const back = await waitReadyPods('echo', 3);
    for (const p of back) {
      const reply = await getJson(p.status.podIP, 8080);
      assert.equal(reply.podName, p.metadata.name);
    }
    const nodes = (await client().list('/api/v1/nodes')).items;
    assert.ok(nodes.every((n) => n.status.conditions.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True')));
  });

  const createPod = (name: string, spec: Record<string, unknown>): Promise<KubeObject> =>
    client().create(`/api/v1/namespaces/${ns}/pods`, { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: name } }, spec });
  const getPod = (name: string): Promise<KubeObject> => client().get(`/api/v1/namespaces/${ns}/pods/${name}`);

  it('restarts a failing container with growing back-off (CrashLoopBackOff)', async () => {
    const createdMs = Date.now();
    await createPod('crashy', {
      restartPolicy: 'Always',
      containers: [{ name: 'main', image: 'tools/sh', command: ['sh', '-c', 'exit 3'] }],
    });
    const seen = new Set<string>();
    const pod = await waitFor('crashy restarted three times', async () => {
      const p = await getPod('crashy');
      const cs = p.status?.containerStatuses?.[0];
      if (cs?.state?.waiting?.reason) seen.add(cs.state.waiting.reason);
      return cs && cs.restartCount >= 3 ? p : undefined;
    }, 30_000, 50);
    // The first restart is immediate, restarts 2 and 3 wait 0.5 s then 1 s (test back-off): three
    // restarts cannot be seen sooner than 1.5 s after the pod was created (without back-off, a
    // container that exits at once restarts three times in a few tens of milliseconds).
    assert.ok(Date.now() - createdMs >= 1_500, `back-off too short: 3 restarts in ${Date.now() - createdMs} ms`);
    assert.equal(pod.status.containerStatuses[0].lastState.terminated.exitCode, 3);
    assert.equal(pod.status.phase, 'Running');
    assert.ok(seen.has('CrashLoopBackOff'), `waiting reasons seen: ${[...seen].join(', ')}`);
    await client().delete(`/api/v1/namespaces/${ns}/pods/crashy`);
  });

  it('runs init containers first and completes a run-once pod on a shared emptyDir', async () => {
    const env = [{ name: 'WORK', value: '/work' }];
    await createPod('once', {
      restartPolicy: 'Never',
      volumes: [{ name: 'work', emptyDir: {} }],
      initContainers: [{ name: 'init', image: 'tools/sh', command: ['sh', '-c', 'echo hi > "$WORK/init.txt"'], env,
        volumeMounts: [{ name: 'work', mountPath: '/work' }] }],
      containers: [{ name: 'main', image: 'tools/sh', command: ['sh', '-c', 'test "$(cat "$WORK/init.txt")" = hi'], env,
        volumeMounts: [{ name: 'work', mountPath: '/work' }] }],
    });
    const pod = await waitFor('once finished', async () => {
      const p = await getPod('once');
      return ['Succeeded', 'Failed'].includes(p.status?.phase) ? p : undefined;
    }, 30_000);
    assert.equal(pod.status.phase, 'Succeeded', JSON.stringify(pod.status.containerStatuses));
    assert.equal(pod.status.initContainerStatuses[0].state.terminated.exitCode, 0);
    await client().delete(`/api/v1/namespaces/${ns}/pods/once`);
  });

  it('waits with CreateContainerConfigError for a missing Secret and starts once it exists', async () => {
    await createPod('needs-secret', {
      containers: [{ name: 'main', image: 'tools/sh', command: ['sh', '-c', 'test "$TOKEN" = late && sleep 600'],
        env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'late-secret', key: 'token' } } }] }],
    });
    await waitFor('CreateContainerConfigError', async () =>
      (await getPod('needs-secret')).status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError', 30_000);
    await client().create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'late-secret' }, stringData: { token: 'late' },
    });
    await waitReadyPods('needs-secret', 1, 30_000);
    await client().delete(`/api/v1/namespaces/${ns}/pods/needs-secret`, { gracePeriodSeconds: 1 });
    await waitFor('needs-secret gone', async () => (await listPods('needs-secret')).length === 0, 30_000);
  });

  it('leaves no process and no listening port behind after teardown', async () => {
    rememberPids();
    assert.ok(pgids.size >= 4 + 3, 'control plane and pod processes were tracked');
    await cluster!.stop();
    // A SIGKILLed process is gone once reaped, which can trail stop() by a few milliseconds.
    await waitFor('every tracked process group gone', () => aliveGroups([...pgids]).length === 0, 5_000)
      .catch(() => undefined);
    assert.deepEqual(aliveGroups([...pgids]).map(describeGroup), []);
    const leftovers = listeningSockets().filter((s) =>
      s.ip.startsWith(`${podIpPrefix}.`) || (s.ip === '127.0.0.1' && controlPlanePorts.includes(s.port)));
    assert.deepEqual(leftovers, []);
  });
});
