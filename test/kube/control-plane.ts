// A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler as local processes on free loopback ports, in one temporary folder.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { findBinDir, requiredBinaries } from './binaries';
import { KubeClient, waitFor } from './kube-client';
import { createClusterPki, randomToken } from './pki';
import { GroupProcess, removeOnExit, spawnGroup } from './processes';

export interface ControlPlaneOptions {
  /** Folder with the binaries; default: findBinDir(). */
  binDir?: string;
  /** Keep the temporary folder (logs, etcd data) after stop(); default from ARCHIPEL_KUBE_KEEP=1. */
  keepTempDir?: boolean;
  /** Deadline of the whole start; the issue asks for < 30 s with cached binaries. */
  startTimeoutMs?: number;
  /** Extra flags per component, appended last (later flags win). */
  extraArgs?: Partial<Record<'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler', string[]>>;
}

export interface ControlPlaneEndpoints {
  server: string;
  etcdUrl: string;
  ports: number[];
}

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function httpGetStatus(url: string, headers: Record<string, string> = {}, ca?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const isHttps = url.startsWith('https:');
    const options: https.RequestOptions = { headers, timeout: 2_000 };
    if (isHttps) {
      // kcm and scheduler serve self-signed certs from their own cert-dir; only /healthz is read.
      if (ca) options.ca = ca;
      else options.rejectUnauthorized = false;
    }
    const req = (isHttps ? https : http).get(url, options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export class ControlPlane {
  readonly client: KubeClient;
  private readonly processes = new Map<string, GroupProcess>();
  private stopped = false;

  private constructor(
    readonly dir: string,
    readonly binDir: string,
    readonly endpoints: ControlPlaneEndpoints,
    readonly adminToken: string,
    readonly caPem: string,
    readonly kubeconfigPath: string,
    private readonly keepTempDir: boolean,
  ) {
    this.client = new KubeClient({ server: endpoints.server, caPem, token: adminToken });
  }

  get server(): string {
    return this.endpoints.server;
  }

  /** Starts the control plane and waits until it serves and its controllers act. */
  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const binDir = options.binDir ?? findBinDir(requiredBinaries);
    if (!binDir) throw new Error('Kubernetes test binaries not found: run test/kube/setup.sh (see test/kube/README.md)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-kube-'));
    const keepTempDir = options.keepTempDir ?? process.env.ARCHIPEL_KUBE_KEEP === '1';
    if (!keepTempDir) removeOnExit(dir);
    const startedAt = Date.now();
    const deadline = startedAt + (options.startTimeoutMs ?? 60_000);
    const remainingMs = (): number => Math.max(1, deadline - Date.now());
    const pki = createClusterPki(path.join(dir, 'pki'));
    const [etcdClientPort, etcdPeerPort, apiPort, kcmPort, schedulerPort] = await Promise.all(
      [0, 1, 2, 3, 4].map(() => freeLoopbackPort()),
    );
    const endpoints: ControlPlaneEndpoints = {
      server: `https://127.0.0.1:${apiPort}`,
      etcdUrl: `http://127.0.0.1:${etcdClientPort}`,
      ports: [etcdClientPort, etcdPeerPort, apiPort, kcmPort, schedulerPort],
    };
    const adminToken = randomToken();
    const tokensPath = path.join(dir, 'pki', 'tokens.csv');
    // Control-plane components and the node agent are cluster admins: this cluster only serves tests.
    fs.writeFileSync(
      tokensPath,
      `${adminToken},archipel-test-admin,archipel-test-admin,"system:masters"\n`,
      { mode: 0o600 },
    );
    const kubeconfigPath = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfigPath, kubeconfigYaml(endpoints.server, pki.caPem, adminToken), { mode: 0o600 });
    const plane = new ControlPlane(dir, binDir, endpoints, adminToken, pki.caPem, kubeconfigPath, keepTempDir);
    try {
      plane.launch('etcd', [
        '--name=default',
        `--data-dir=${path.join(dir, 'etcd')}`,
        `--listen-client-urls=${endpoints.etcdUrl}`,
        `--advertise-client-urls=${endpoints.etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        '--unsafe-no-fsync=true', // test data: durability is not worth the latency
        '--quota-backend-bytes=1073741824',
        '--log-level=warn',
        ...(options.extraArgs?.etcd ?? []),
      ]);
      await waitFor('etcd health', async () => (await httpGetStatus(`${endpoints.etcdUrl}/health`)) === 200, remainingMs(), 100);
      plane.launch('kube-apiserver', [
        `--etcd-servers=${endpoints.etcdUrl}`,
        `--secure-port=${apiPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        // A loopback advertise address is refused by the default (lease) endpoint reconciler.
        '--endpoint-reconciler-type=none',
        `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${pki.servingCertPath}`,
        `--tls-private-key-file=${pki.servingKeyPath}`,
        `--client-ca-file=${pki.caCertPath}`,
        `--token-auth-file=${tokensPath}`,
        '--authorization-mode=RBAC',
        '--anonymous-auth=false',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${pki.serviceAccountPubPath}`,
        `--service-account-signing-key-file=${pki.serviceAccountKeyPath}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        '--allow-privileged=true',
        '--profiling=false',
        '--v=1',
        ...(options.extraArgs?.['kube-apiserver'] ?? []),
      ]);
      await waitFor(
        'kube-apiserver /readyz',
        async () => (await httpGetStatus(`${endpoints.server}/readyz`, { Authorization: `Bearer ${adminToken}` }, pki.caPem)) === 200,
        remainingMs(),
        100,
      );
      const componentKubeconfig = kubeconfigPath;
      plane.launch('kube-controller-manager', [
        `--kubeconfig=${componentKubeconfig}`,
        `--authentication-kubeconfig=${componentKubeconfig}`,
        `--authorization-kubeconfig=${componentKubeconfig}`,
        // No front proxy here: skip reading the requestheader CA (only log noise without it).
        '--authentication-skip-lookup=true',
        `--secure-port=${kcmPort}`,
        '--bind-address=127.0.0.1',
        `--cert-dir=${path.join(dir, 'kcm-certs')}`,
        '--leader-elect=false',
        '--controllers=*',
        `--service-account-private-key-file=${pki.serviceAccountKeyPath}`,
        `--root-ca-file=${pki.caCertPath}`,
        '--use-service-account-credentials=false',
        '--service-cluster-ip-range=10.96.0.0/16',
        '--allocate-node-cidrs=false',
        // Quicker reaction to node heartbeats than production defaults (5 s / 50 s).
        '--node-monitor-period=1s',
        '--node-monitor-grace-period=20s',
        '--concurrent-statefulset-syncs=5',
        '--v=1',
        ...(options.extraArgs?.['kube-controller-manager'] ?? []),
      ]);
      plane.launch('kube-scheduler', [
        `--kubeconfig=${componentKubeconfig}`,
        `--authentication-kubeconfig=${componentKubeconfig}`,
        `--authorization-kubeconfig=${componentKubeconfig}`,
        '--authentication-skip-lookup=true',
        `--secure-port=${schedulerPort}`,
        '--bind-address=127.0.0.1',
        `--cert-dir=${path.join(dir, 'scheduler-certs')}`,
        '--leader-elect=false',
        '--v=1',
        ...(options.extraArgs?.['kube-scheduler'] ?? []),
      ]);
      await Promise.all([
        waitFor('kube-controller-manager /healthz', async () => (await httpGetStatus(`https://127.0.0.1:${kcmPort}/healthz`)) === 200, remainingMs(), 100),
        waitFor('kube-scheduler /healthz', async () => (await httpGetStatus(`https://127.0.0.1:${schedulerPort}/healthz`)) === 200, remainingMs(), 100),
        // Pods are refused until the namespace's default ServiceAccount exists (serviceaccount controller).
        waitFor('default ServiceAccount', () => plane.client.getOptional('/api/v1/namespaces/default/serviceaccounts/default'), remainingMs(), 100),
      ]);
    } catch (err) {
      const tails = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']
        .map((name) => `--- ${name} ---\n${plane.logTail(name, 15)}`)
        .join('\n');
      await plane.stop();
      throw new Error(`control plane failed to start: ${(err as Error).message}\n${tails}`);
    }
    return plane;
  }

  private launch(name: string, args: string[]): void {
    if (this.stopped) throw new Error('control plane stopped');
    const logDir = path.join(this.dir, 'logs');
    fs.mkdirSync(logDir, { recursive: true });
    const proc = spawnGroup(path.join(this.binDir, name), {
      args,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.dir },
      cwd: this.dir,
      logPath: path.join(logDir, `${name}.log`),
    });
    this.processes.set(name, proc);
  }

  /** The last `lines` lines of a component's log (for failure messages). */
  logTail(name: string, lines = 40): string {
    try {
      const text = fs.readFileSync(path.join(this.dir, 'logs', `${name}.log`), 'utf8');
      return text.split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Pids of the component process groups, for leak checks. */
  pids(): number[] {
    return [...this.processes.values()].map((p) => p.pid);
  }

  /** Runs a binary of the bin folder (kubectl, helm) against this cluster. */
  run(binary: 'kubectl' | 'helm', args: string[], timeoutMs = 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        path.join(this.binDir, binary),
        args,
        {
          env: {
            PATH: process.env.PATH ?? '/usr/bin:/bin',
            HOME: this.dir,
            KUBECONFIG: this.kubeconfigPath,
            // helm keeps caches and repositories in these; keep them in the temporary folder.
            HELM_CACHE_HOME: path.join(this.dir, 'helm', 'cache'),
            HELM_CONFIG_HOME: path.join(this.dir, 'helm', 'config'),
            HELM_DATA_HOME: path.join(this.dir, 'helm', 'data'),
          },
          timeout: timeoutMs,
          maxBuffer: 16 * 1024 * 1024,
          killSignal: 'SIGKILL',
        },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`${binary} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
          else resolve(stdout);
        },
      );
    });
  }

  kubectl(args: string[], timeoutMs?: number): Promise<string> {
    return this.run('kubectl', args, timeoutMs);
  }

  helm(args: string[], timeoutMs?: number): Promise<string> {
    return this.run('helm', args, timeoutMs);
  }

  /** Stops every component (reverse start order) and removes the folder. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.client.close();
    for (const name of ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd']) {
      await this.processes.get(name)?.stop(5_000);
    }
    if (!this.keepTempDir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A kubeconfig with one cluster, user and context named "archipel-test". */
export function kubeconfigYaml(server: string, caPem: string, token: string): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'archipel-test', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } },
    ],
    users: [{ name: 'archipel-test', user: { token } }],
    contexts: [{ name: 'archipel-test', context: { cluster: 'archipel-test', user: 'archipel-test' } }],
    'current-context': 'archipel-test',
  });
}
