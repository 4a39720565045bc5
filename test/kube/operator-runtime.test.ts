// The operator's runtime against a real control plane: `archipel operator` as processes with a
// kubeconfig, the CRDs of crds/ (or minimal ones for kinds not written yet), leader election
// between two replicas, takeover after a SIGKILL, and a real 410 Gone relisted by an informer.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import winston from 'winston';
import { parseAllDocuments } from 'yaml';
import { skipWithoutKubeBinaries } from './binaries';
import { ControlPlane, freeLoopbackPort } from './control-plane';
import { waitFor } from './kube-client';
import { aliveGroups, describeGroup } from './leak-check';
import { GroupProcess, spawnGroup } from './processes';
import { CUSTOM_RESOURCES, ResourceInformer, WatchLike } from '../../operator/src/runtime/informers';
import { KubeApi, loadKubeConfig } from '../../operator/src/runtime/kube-api';
import { Watch } from '@kubernetes/client-node';

const ns = 'team-a';
const leaseName = 'archipel-operator';
// Short timings so that the takeover is quick to watch: a standby takes the Lease 6 s after it
// last saw it renewed; the leader renews every second and gives up after 4 s without renewing.
const leaseDurationS = 6;
const renewDeadlineS = 4;
const retryPeriodS = 1;
const group = 'storage.archipel.io';
const gridsPath = `/apis/${group}/v1alpha1/namespaces/${ns}/grids`;
/** A Grid as in examples/three-sites.yaml. */
const gridSpec = { defaultPolicy: 'default', s3: { port: 9000, region: 'us-east-1' } };

type LogLine = { message?: string; [field: string]: unknown };

interface OperatorProcess {
  name: string;
  proc: GroupProcess;
  port: number;
  logPath: string;
  lines(): LogLine[];
  identity(): string | undefined;
}

/** The folder holding package.json and crds/, from wherever the compiled test sits (dist/ or .build/NAME/). */
function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'crds'))) return dir;
  }
  throw new Error(`repository root not found above ${__dirname}`);
}

/** The CRD of each custom kind: the file in crds/ that defines it, else a minimal stand-in. */
function crdManifests(): { plural: string; source: string; manifest: string }[] {
  const dir = path.join(repoRoot(), 'crds');
  const found = new Map<string, { source: string; manifest: string }>();
  for (const file of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8'))) {
      const obj = doc.toJS() as { kind?: string; metadata?: { name?: string } } | null;
      if (obj?.kind === 'CustomResourceDefinition' && obj.metadata?.name?.endsWith(`.${group}`)) {
        found.set(obj.metadata.name, { source: `crds/${file}`, manifest: JSON.stringify(obj) });
      }
    }
  }
  return CUSTOM_RESOURCES.map((r) => {
    const name = `${r.plural}.${group}`;
    const real = found.get(name);
    if (real) return { plural: r.plural, ...real };
    const minimal = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: r.plural, singular: r.kind.toLowerCase(), kind: r.kind },
        versions: [{
          name: 'v1alpha1', served: true, storage: true, subresources: { status: {} },
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        }],
      },
    };
    return { plural: r.plural, source: 'minimal stand-in', manifest: JSON.stringify(minimal) };
  });
}

function readLines(logPath: string): LogLine[] {
  let text = '';
  try {
    text = fs.readFileSync(logPath, 'utf8');
  } catch {
    return [];
  }
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a line being written
    }
  }
  return out;
}

function getJson(port: number, urlPath: string): Promise<{ status: number; body: any; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 2_000, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe('operator runtime (archipel operator against a real control plane)', function () {
  this.timeout(300_000);
  let plane: ControlPlane | undefined;
  let workDir = '';
  const operators: OperatorProcess[] = [];
  const pgids = new Set<number>();

  const cliPath = path.resolve(__dirname, '..', '..', 'cli', 'archipel.js');

  async function startOperator(name: string): Promise<OperatorProcess> {
    const port = await freeLoopbackPort();
    const logPath = path.join(workDir, `${name}.log`);
    const proc = spawnGroup(process.execPath, {
      args: [
        cliPath, 'operator',
        '--kubeconfig', plane!.kubeconfigPath,
        '--namespace', ns,
        '--metrics-address', '127.0.0.1', '--metrics-port', String(port),
        '--lease-namespace', ns,
        '--lease-duration', String(leaseDurationS), '--renew-deadline', String(renewDeadlineS), '--retry-period', String(retryPeriodS),
      ],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workDir },
      cwd: workDir,
      logPath,
    });
    pgids.add(proc.pid);
    const op: OperatorProcess = {
      name,
      proc,
      port,
      logPath,
      lines: () => readLines(logPath),
      identity: () => readLines(logPath).find((l) => l.message === 'operator starting')?.identity as string | undefined,
    };
    operators.push(op);
    return op;
  }

  const describeOperator = (op: OperatorProcess): string => `${op.name} (${op.proc.isRunning() ? 'running' : 'exited'}), last log lines:\n${fs.existsSync(op.logPath) ? fs.readFileSync(op.logPath, 'utf8').split('\n').slice(-8).join('\n') : ''}`;

  const waitLog = (op: OperatorProcess, what: string, match: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> =>
    waitFor(`${op.name}: ${what}`, () => {
      if (!op.proc.isRunning()) throw new Error(`operator exited: ${describeOperator(op)}`);
      return op.lines().find(match);
    }, timeoutMs, 100).catch((err: Error) => {
      throw new Error(`${err.message}\n${describeOperator(op)}`);
    });

  const reconcileLine = (name: string, generation: number) => (l: LogLine): boolean =>
    l.message === 'reconcile' && l.kind === 'Grid' && l.namespace === ns && l.name === name && l.generation === generation;

  const leaseHolder = async (): Promise<string | undefined> =>
    (await plane!.client.getOptional(`/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${leaseName}`))?.spec?.holderIdentity || undefined;

  const readyz = (op: OperatorProcess) => getJson(op.port, '/readyz');

  before(async function () {
    skipWithoutKubeBinaries(this);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-operator-runtime-'));
    plane = await ControlPlane.start({ startTimeoutMs: 60_000 });
    for (const pid of plane.pids()) pgids.add(pid);
    const crds = crdManifests();
    console.log(`    CRDs: ${crds.map((c) => `${c.plural} (${c.source})`).join(', ')}`);
    for (const crd of crds) {
      const file = path.join(workDir, `${crd.plural}.crd.json`);
      fs.writeFileSync(file, crd.manifest);
      await plane.kubectl(['apply', '--server-side', '-f', file]);
    }
    await plane.kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...crds.map((c) => `crd/${c.plural}.${group}`)]);
    await plane.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  });

  after(async () => {
    for (const op of operators) await op.proc.stop(5_000);
    await plane?.stop();
    if (workDir && process.env.ARCHIPEL_KUBE_KEEP !== '1') fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('reconciles a new Grid: one "reconcile" log line with its kind, namespace/name and generation, again when the spec changes', async () => {
    const a = await startOperator('operator-a');
    await waitFor('operator-a ready and leading', async () => {
      const r = await readyz(a).catch(() => undefined);
      return r?.status === 200 && r.body.role === 'leader' && r.body.reconciling === true ? r : undefined;
    }, 60_000, 200).catch((err: Error) => {
      throw new Error(`${err.message}\n${describeOperator(a)}`);
    });
    assert.equal(await leaseHolder(), a.identity());
    await plane!.client.create(gridsPath, { apiVersion: `${group}/v1alpha1`, kind: 'Grid', metadata: { name: 'g1' }, spec: gridSpec });
    const line = await waitLog(a, 'reconcile of Grid team-a/g1 generation 1', reconcileLine('g1', 1));
    assert.equal(line.level, 'info');
    assert.equal(line.identity, a.identity());
    await plane!.client.patch(`${gridsPath}/g1`, { spec: { s3: { port: 9100 } } });
    await waitLog(a, 'reconcile of Grid team-a/g1 generation 2', reconcileLine('g1', 2));
    const metrics = (await getJson(a.port, '/metrics')).text;
    // Both passes finished without error (a grid with no pods yet is not Ready, so it asks to be looked at again).
    const finished = [...metrics.matchAll(/archipel_operator_reconcile_total\{kind="Grid",result="(success|requeue)"\} (\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
    assert.ok(finished >= 2, `${finished} Grid reconciles finished`);
    assert.doesNotMatch(metrics, /archipel_operator_reconcile_total\{kind="Grid",result="error"\}/);
    assert.match(metrics, /archipel_operator_leader 1/);
    assert.match(metrics, /archipel_operator_workqueue_depth\{kind="Grid"\} 0/);
    assert.match(metrics, /archipel_operator_reconcile_duration_seconds_count\{kind="Grid"\} [2-9]/);
    assert.equal((await getJson(a.port, '/healthz')).status, 200);
  });

  it('runs a second replica as a ready standby: only one holds the Lease and reconciles', async () => {
    const [a] = operators;
    const b = await startOperator('operator-b');
    const ready = await waitFor('operator-b ready as standby', async () => {
      const r = await readyz(b).catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    }, 60_000, 200);
    assert.equal(ready.body.role, 'standby');
    assert.equal(ready.body.reconciling, false);
    assert.equal(ready.body.holder, a.identity());
    assert.equal(await leaseHolder(), a.identity());
    await plane!.client.create(gridsPath, { apiVersion: `${group}/v1alpha1`, kind: 'Grid', metadata: { name: 'g2' }, spec: gridSpec });
    await waitLog(a, 'the leader reconciles g2', reconcileLine('g2', 1));
    // b's informers saw the same event (its cache has g2); it does not reconcile as a standby.
    await waitLog(b, 'informer synced', (l) => l.message === 'informer synced' && l.resource === 'Grid');
    assert.deepEqual(b.lines().filter((l) => l.message === 'reconcile'), []);
    const metrics = (await getJson(b.port, '/metrics')).text;
    assert.match(metrics, /archipel_operator_leader 0/);
    assert.doesNotMatch(metrics, /archipel_operator_reconcile_total\{/);
    assert.equal(await leaseHolder(), a.identity());
  });

  it('when the leader is SIGKILLed, the standby takes the Lease within the lease duration and reconciles', async () => {
    const [a, b] = operators;
    const killedMs = Date.now();
    a.proc.signal('SIGKILL');
    await a.proc.exited;
    const holder = await waitFor('the Lease taken by operator-b', async () => {
      const h = await leaseHolder();
      return h === b.identity() ? h : undefined;
    }, 60_000, 100);
    const takeoverMs = Date.now() - killedMs;
    console.log(`    takeover ${takeoverMs} ms after SIGKILL (lease ${leaseDurationS} s, retry ${retryPeriodS} s)`);
    assert.equal(holder, b.identity());
    // b must see the Lease unchanged for the lease duration, measured from when it last saw a
    // renewal (up to one jittered retry period before or after the kill), then act at its next retry.
    const limitMs = (leaseDurationS + 2.4 * retryPeriodS + 1) * 1_000;
    assert.ok(takeoverMs <= limitMs, `takeover took ${takeoverMs} ms (limit ${limitMs} ms)`);
    assert.ok(takeoverMs >= (leaseDurationS - 1.2 * retryPeriodS) * 1_000, `took the Lease after ${takeoverMs} ms: before it expired`);
    // The new leader resyncs every cached object, then follows new events.
    await waitLog(b, 'reconcile of g1 by the new leader', reconcileLine('g1', 2));
    await waitLog(b, 'reconcile of g2 by the new leader', reconcileLine('g2', 1));
    await plane!.client.create(gridsPath, { apiVersion: `${group}/v1alpha1`, kind: 'Grid', metadata: { name: 'g3' }, spec: gridSpec });
    await waitLog(b, 'reconcile of g3 by the new leader', reconcileLine('g3', 1));
    const ready = await readyz(b);
    assert.equal(ready.body.role, 'leader');
  });

  it('a leader stopped with SIGTERM releases the Lease and exits 0', async () => {
    const b = operators[1];
    b.proc.signal('SIGTERM');
    const exit = await b.proc.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, describeOperator(b));
    assert.equal(await leaseHolder(), undefined, 'holder emptied: a standby would not wait for the lease to expire');
    const messages = b.lines().map((l) => l.message);
    assert.ok(messages.includes('lease released'), messages.join(', '));
    assert.equal(messages[messages.length - 1], 'operator stopped');
  });

  it('relists when the API server answers a watch with 410 Gone (too old resource version)', async () => {
    const { config } = loadKubeConfig(plane!.kubeconfigPath);
    const api = new KubeApi(config);
    const realWatch = new Watch(config);
    const errorEvents: Array<{ code?: number; reason?: string; message?: string }> = [];
    let watchCalls = 0;
    // The first watch resumes from resourceVersion 1, long compacted away as far as the watch cache
    // is concerned: the real API server answers with an ERROR event, code 410, reason Expired.
    const staleFirst: WatchLike = {
      watch: (p, params, callback, done) => {
        const stale = watchCalls++ === 0;
        return realWatch.watch(p, stale ? { ...params, resourceVersion: '1' } : params, (phase, obj, raw) => {
          if (phase === 'ERROR') errorEvents.push(obj);
          callback(phase, obj, raw);
        }, done);
      },
    };
    const events: string[] = [];
    const grids = CUSTOM_RESOURCES.find((r) => r.kind === 'Grid')!;
    const informer = new ResourceInformer({
      resource: grids,
      namespace: ns,
      list: () => api.listAll(gridsPath, { apiVersion: grids.apiVersion, kind: grids.kind }),
      watch: staleFirst,
      onEvent: (type, obj) => events.push(`${type} ${obj.metadata.name}`),
      log: winston.createLogger({ silent: true, transports: [new winston.transports.Console()] }),
    });
    try {
      informer.start();
      await informer.waitForSync();
      await waitFor('relist after 410', () => informer.lists >= 2 && watchCalls >= 2, 30_000, 50);
      assert.equal(errorEvents[0]?.code, 410, JSON.stringify(errorEvents));
      assert.equal(errorEvents[0]?.reason, 'Expired');
      assert.equal(informer.restarts, 0, 'client-node relisted by itself, no restart needed');
      await plane!.client.create(gridsPath, { apiVersion: `${group}/v1alpha1`, kind: 'Grid', metadata: { name: 'g4' }, spec: gridSpec });
      await waitFor('g4 seen through the new watch', () => events.includes('add g4'), 30_000, 50);
      assert.deepEqual(informer.list().map((o) => o.metadata.name).sort(), ['g1', 'g2', 'g3', 'g4']);
    } finally {
      await informer.stop();
    }
  });

  it('leaves no process behind', async () => {
    for (const op of operators) await op.proc.stop(5_000);
    await plane!.stop();
    await waitFor('every process group gone', () => aliveGroups([...pgids]).length === 0, 10_000).catch(() => undefined);
    assert.deepEqual(aliveGroups([...pgids]).map(describeGroup), []);
  });
});
