// A test kubelet for many nodes: registers one or more Nodes per site, keeps their leases fresh,
// provisions local volumes and runs the pods bound to its nodes as local processes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { kubeVersion } from './binaries';
import { KubeApiError, KubeClient, KubeObject } from './kube-client';
import { ImageCommands } from './pod-spec';
import { PodVolumes } from './pod-volumes';
import { BackoffOptions, PodRuntime } from './pod-runtime';
import { LoopbackIpPool } from './loopback-ips';
import { removeOnExit } from './processes';
import { VolumeProvisioner } from './volume-provisioner';

export const zoneLabel = 'topology.kubernetes.io/zone';

export interface NodeAgentOptions {
  client: KubeClient;
  /** Site names; each becomes a zone with `nodesPerSite` nodes named `<site>-node-<i>`. */
  sites: string[];
  nodesPerSite?: number;
  /** image → local command (see ImageCommand). */
  images: ImageCommands;
  /** Work folder (pod folders, volumes, logs); default: a new temporary folder removed on stop(). */
  dir?: string;
  /** First two octets of pod IPs, default "127.77" (pods get 127.77.x.y). */
  podIpPrefix?: string;
  storageClassName?: string;
  syncIntervalMs?: number;
  leaseRenewIntervalMs?: number;
  backoff?: Partial<BackoffOptions>;
  /** host:port of the API server, given to pods as KUBERNETES_SERVICE_HOST/PORT. */
  apiServer?: { host: string; port: number };
}

interface NodeState {
  name: string;
  site: string;
  hostIP: string;
  up: boolean;
}

interface PodEntry {
  uid: string;
  namespace: string;
  name: string;
  nodeName: string;
  podIP: string;
  podDir: string;
  runtime?: PodRuntime;
  stopping: boolean;
  lastStatus?: string;
}

export interface RunningPod {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string;
  podIP: string;
  pids: number[];
}

const microTime = (): string => new Date().toISOString().replace('Z', '000Z');
const maxPodsPerAgent = 1000;

export class NodeAgent {
  readonly dir: string;
  readonly storageClassName: string;
  private readonly nodes = new Map<string, NodeState>();
  private readonly pods = new Map<string, PodEntry>();
  private readonly retryAfter = new Map<string, number>();
  private readonly ips: LoopbackIpPool;
  private readonly provisioner: VolumeProvisioner;
  private readonly backoff: BackoffOptions;
  private readonly ownsDir: boolean;
  private loopTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private syncing = false;
  private lastError: string | undefined;

  private constructor(private readonly options: NodeAgentOptions) {
    this.ownsDir = !options.dir;
    this.dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-nodes-'));
    if (this.ownsDir && process.env.ARCHIPEL_KUBE_KEEP !== '1') removeOnExit(this.dir);
    this.storageClassName = options.storageClassName ?? 'archipel-local';
    this.ips = new LoopbackIpPool(options.podIpPrefix ?? '127.77');
    this.backoff = { initialBackoffMs: 10_000, maxBackoffMs: 300_000, resetAfterMs: 600_000, ...options.backoff };
    this.provisioner = new VolumeProvisioner({
      client: options.client,
      storageClassName: this.storageClassName,
      volumesDir: path.join(this.dir, 'volumes'),
      nodeNames: () => [...this.nodes.values()].filter((n) => n.up).map((n) => n.name),
    });
    const perSite = options.nodesPerSite ?? 1;
    if (perSite < 1 || perSite > 50) throw new Error('nodesPerSite must be within 1..50');
    options.sites.forEach((site, siteIndex) => {
      for (let i = 0; i < perSite; i++) {
        const name = `${site}-node-${i}`;
        this.nodes.set(name, { name, site, hostIP: `127.76.${siteIndex + 1}.${i + 1}`, up: true });
      }
    });
  }

  /** Registers the nodes, the StorageClass, and starts the loops. */
  static async start(options: NodeAgentOptions): Promise<NodeAgent> {
    const agent = new NodeAgent(options);
    await agent.provisioner.ensureStorageClass();
    for (const node of agent.nodes.values()) await agent.registerNode(node);
    await agent.renewLeases();
    agent.leaseTimer = setInterval(() => void agent.renewLeases(), options.leaseRenewIntervalMs ?? 2_000);
    agent.scheduleSync(0);
    return agent;
  }

  private get client(): KubeClient {
    return this.options.client;
  }

  nodeNames(site?: string): string[] {
    return [...this.nodes.values()].filter((n) => site === undefined || n.site === site).map((n) => n.name);
  }

  private nodeStatus(node: NodeState): Record<string, unknown> {
    const t = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const cond = (type: string, status: string, reason: string, message: string): Record<string, string> => ({
      type, status, reason, message, lastHeartbeatTime: t, lastTransitionTime: t,
    });
    return {
      capacity: { cpu: '8', memory: '32Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      allocatable: { cpu: '8', memory: '32Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        node.up
          ? cond('Ready', 'True', 'KubeletReady', 'archipel test node agent is posting ready status')
          : cond('Ready', 'False', 'KubeletNotReady', 'site lost (archipel test node agent)'),
      ],
      addresses: [
        { type: 'InternalIP', address: node.hostIP },
        { type: 'Hostname', address: node.name },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
      nodeInfo: {
        machineID: node.name, systemUUID: node.name, bootID: node.name, kernelVersion: os.release(),
        osImage: 'archipel test node', containerRuntimeVersion: 'process://1', kubeletVersion: kubeVersion,
        kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64',
      },
    };
  }

  private async registerNode(node: NodeState): Promise<void> {
    const body: KubeObject = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: node.name,
        labels: {
          'kubernetes.io/hostname': node.name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          [zoneLabel]: node.site,
          'topology.kubernetes.io/region': 'archipel-test',
        },
      },
      spec: {},
      status: this.nodeStatus(node),
    };
    try {
      await this.client.create('/api/v1/nodes', body);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.statusCode === 409)) throw err;
      await this.postNodeStatus(node);
    }
  }

  private postNodeStatus(node: NodeState): Promise<unknown> {
    return this.client.patch(`/api/v1/nodes/${node.name}/status`, { status: this.nodeStatus(node) }, 'strategic');
  }

  private async renewLeases(): Promise<void> {
    if (this.stopped) return;
    await Promise.all(
      [...this.nodes.values()].filter((n) => n.up).map(async (node) => {
        const leasePath = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${node.name}`;
        try {
          try {
            await this.client.patch(leasePath, { spec: { renewTime: microTime(), holderIdentity: node.name } });
          } catch (err) {
            if (!(err instanceof KubeApiError && err.statusCode === 404)) throw err;
            const nodeObj = await this.client.get(`/api/v1/nodes/${node.name}`);
            await this.client.create('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
              apiVersion: 'coordination.k8s.io/v1',
              kind: 'Lease',
              metadata: {
                name: node.name,
                ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node.name, uid: nodeObj.metadata.uid }],
              },
              spec: { holderIdentity: node.name, leaseDurationSeconds: 40, renewTime: microTime() },
            });
          }
        } catch (err) {
          this.lastError = (err as Error).message;
        }
      }),
    );
  }

  private scheduleSync(delayMs: number): void {
    if (this.stopped) return;
    this.loopTimer = setTimeout(() => void this.syncOnce().finally(() => this.scheduleSync(this.options.syncIntervalMs ?? 250)), delayMs);
  }

  /** One pass: provision volumes, start, stop and report pods. */
  private async syncOnce(): Promise<void> {
    if (this.stopped || this.syncing) return;
    this.syncing = true;
    try {
      await this.provisioner.sync();
      const list = await this.client.list('/api/v1/pods');
      const seen = new Set<string>();
      for (const pod of list.items) {
        const node = this.nodes.get(pod.spec?.nodeName ?? '');
        if (!node || !node.up) continue;
        const uid = pod.metadata.uid ?? '';
        seen.add(uid);
        this.syncPod(pod, node);
      }
      for (const entry of this.pods.values()) {
        // Gone from the API (force-deleted): nothing to report to, stop at once.
        if (!seen.has(entry.uid) && !entry.stopping && this.nodes.get(entry.nodeName)?.up) void this.stopPod(entry, 0, false);
      }
      for (const entry of this.pods.values()) await this.pushStatus(entry);
    } catch (err) {
      this.lastError = (err as Error).message;
    } finally {
      this.syncing = false;
    }
  }

  private syncPod(pod: KubeObject, node: NodeState): void {
    const uid = pod.metadata.uid ?? '';
    const entry = this.pods.get(uid);
    if (pod.metadata.deletionTimestamp) {
      if (entry && !entry.stopping) void this.stopPod(entry, (pod.metadata.deletionGracePeriodSeconds ?? 30) * 1000, true);
      if (!entry) void this.deletePodObject(pod.metadata.namespace ?? 'default', pod.metadata.name, uid);
      return;
    }
    if (entry || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    if ((this.retryAfter.get(uid) ?? 0) > Date.now()) return;
    if (this.pods.size >= maxPodsPerAgent) throw new Error(`more than ${maxPodsPerAgent} pods on the test node agent`);
    const newEntry: PodEntry = {
      uid,
      namespace: pod.metadata.namespace ?? 'default',
      name: pod.metadata.name,
      nodeName: node.name,
      podIP: this.podIpFor(pod),
      podDir: path.join(this.dir, 'pods', `${pod.metadata.namespace}_${pod.metadata.name}_${uid}`),
      stopping: false,
    };
    this.pods.set(uid, newEntry);
    void this.startPod(pod, node, newEntry);
  }

  /** A pod started again (site back) keeps its address if free; a new pod gets the next one. */
  private podIpFor(pod: KubeObject): string {
    const previous: string | undefined = pod.status?.podIP;
    if (previous && this.ips.reserve(previous)) return previous;
    return this.ips.allocate();
  }

  private async startPod(pod: KubeObject, node: NodeState, entry: PodEntry): Promise<void> {
    try {
      fs.mkdirSync(entry.podDir, { recursive: true });
      const volumes = new PodVolumes(this.client, pod, path.join(entry.podDir, 'volumes'));
      const prepared = await volumes.prepare();
      if (!prepared.ready) {
        this.forget(entry);
        this.retryAfter.set(entry.uid, Date.now() + 1_000);
        await this.patchPodStatus(entry, this.waitingStatus(pod, node, prepared.reason, prepared.message));
        return;
      }
      const envSources = await volumes.envSources();
      if (this.pods.get(entry.uid) !== entry || entry.stopping) return;
      const api = this.options.apiServer;
      entry.runtime = new PodRuntime({
        pod,
        podIP: entry.podIP,
        hostIP: node.hostIP,
        podDir: entry.podDir,
        images: this.options.images,
        backoff: this.backoff,
        volumeFolders: prepared.folders,
        envSources,
        baseEnv: api ? { KUBERNETES_SERVICE_HOST: api.host, KUBERNETES_SERVICE_PORT: String(api.port) } : {},
        onChange: () => void this.pushStatus(entry),
      });
      const configError = entry.runtime.configError();
      if (configError) {
        // Like the kubelet: report and retry (the Secret or ConfigMap may appear later).
        entry.runtime = undefined;
        this.forget(entry);
        this.retryAfter.set(entry.uid, Date.now() + 1_000);
        await this.patchPodStatus(entry, this.waitingStatus(pod, node, 'CreateContainerConfigError', configError));
        return;
      }
      entry.runtime.start();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.forget(entry);
      this.retryAfter.set(entry.uid, Date.now() + 1_000);
    }
  }

  private waitingStatus(pod: KubeObject, node: NodeState, reason: string, message: string): Record<string, unknown> {
    return {
      phase: 'Pending',
      hostIP: node.hostIP,
      containerStatuses: (pod.spec?.containers ?? []).map((c: KubeObject) => ({
        name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0,
        state: { waiting: { reason, message } },
      })),
    };
  }

  private async patchPodStatus(entry: PodEntry, status: Record<string, unknown>): Promise<void> {
    const json = JSON.stringify(status);
    if (entry.lastStatus === json) return;
    entry.lastStatus = json;
    try {
      await this.client.patch(`/api/v1/namespaces/${entry.namespace}/pods/${entry.name}/status`, { status }, 'strategic');
    } catch (err) {
      entry.lastStatus = undefined; // retry on the next pass
      if (!(err instanceof KubeApiError && err.statusCode === 404)) this.lastError = (err as Error).message;
    }
  }

  private async pushStatus(entry: PodEntry): Promise<void> {
    if (!entry.runtime || entry.stopping || this.stopped) return;
    if (!this.nodes.get(entry.nodeName)?.up) return;
    await this.patchPodStatus(entry, entry.runtime.status());
  }

  private async deletePodObject(namespace: string, name: string, uid: string): Promise<void> {
    try {
      await this.client.delete(`/api/v1/namespaces/${namespace}/pods/${name}`, {
        gracePeriodSeconds: 0,
        preconditions: { uid },
      });
    } catch (err) {
      // 409: a newer pod of the same name (StatefulSet) exists already; ours is gone.
      if (!(err instanceof KubeApiError && err.statusCode === 409)) this.lastError = (err as Error).message;
    }
  }

  private forget(entry: PodEntry): void {
    if (this.pods.get(entry.uid) === entry) this.pods.delete(entry.uid);
    this.ips.release(entry.podIP);
  }

  /** SIGTERM with the grace period, SIGKILL after it, then remove the pod from the API. */
  private async stopPod(entry: PodEntry, graceMs: number, deleteObject: boolean): Promise<void> {
    entry.stopping = true;
    await entry.runtime?.stop(graceMs);
    if (deleteObject && !this.stopped) await this.deletePodObject(entry.namespace, entry.name, entry.uid);
    this.forget(entry);
    this.retryAfter.delete(entry.uid);
    fs.rmSync(path.join(entry.podDir, 'volumes'), { recursive: true, force: true });
  }

  /**
   * Loses a whole site: SIGKILL every process on its nodes (as a power cut would) and stop their
   * leases. With `report` (default) the nodes are marked NotReady and their pods not ready at
   * once; without it nothing is written and the node-lifecycle controller notices the silence
   * after its grace period (20 s here), as with a real outage.
   */
  async loseSite(site: string, options: { report?: boolean } = {}): Promise<void> {
    const names = this.nodeNames(site);
    if (names.length === 0) throw new Error(`unknown site ${site}`);
    for (const name of names) this.nodes.get(name)!.up = false;
    const killed: Array<Promise<unknown>> = [];
    for (const entry of [...this.pods.values()]) {
      if (!names.includes(entry.nodeName)) continue;
      const runtime = entry.runtime;
      runtime?.kill();
      if (runtime) killed.push(waitUntil(() => !runtime.anyRunning(), 5_000));
      this.forget(entry);
    }
    await Promise.all(killed);
    if (options.report === false) return;
    for (const name of names) {
      await this.postNodeStatus(this.nodes.get(name)!);
      const pods = await this.client.list(`/api/v1/pods?fieldSelector=spec.nodeName%3D${name}`);
      for (const pod of pods.items) await this.markPodNotReady(pod);
    }
  }

  /** What the node-lifecycle controller does for pods of a NotReady node, done at once. */
  private async markPodNotReady(pod: KubeObject): Promise<void> {
    const t = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const notReady = (type: string): Record<string, unknown> => ({
      type, status: 'False', reason: 'NodeNotReady', message: 'site lost (archipel test node agent)', lastTransitionTime: t,
    });
    const status = {
      conditions: [notReady('Ready'), notReady('ContainersReady')],
      // containerStatuses is an atomic list: send it whole.
      containerStatuses: (pod.status?.containerStatuses ?? []).map((c: KubeObject) => ({ ...c, ready: false, started: false })),
    };
    try {
      await this.client.patch(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`, { status }, 'strategic');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.statusCode === 404)) throw err;
    }
  }

  /** Brings a lost site back: nodes Ready again, their pods started anew. */
  async restoreSite(site: string): Promise<void> {
    const names = this.nodeNames(site);
    if (names.length === 0) throw new Error(`unknown site ${site}`);
    for (const name of names) {
      const node = this.nodes.get(name)!;
      node.up = true;
      await this.postNodeStatus(node);
    }
    await this.renewLeases();
  }

  /** Pods this agent runs now, with their process group ids. */
  runningPods(): RunningPod[] {
    return [...this.pods.values()].map((e) => ({
      namespace: e.namespace,
      name: e.name,
      uid: e.uid,
      nodeName: e.nodeName,
      podIP: e.podIP,
      pids: e.runtime?.pids() ?? [],
    }));
  }

  /** Last error met by a loop (for test diagnostics). */
  get error(): string | undefined {
    return this.lastError;
  }

  /** Stops the loops and every pod process (no API writes); removes its folder if it made it. */
  async stop(graceMs = 2_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.loopTimer) clearTimeout(this.loopTimer);
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    await Promise.all([...this.pods.values()].map((e) => e.runtime?.stop(graceMs)));
    this.pods.clear();
    await waitUntil(() => !this.syncing, 10_000);
    if (this.ownsDir && process.env.ARCHIPEL_KUBE_KEEP !== '1') fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
