// One pod run as local processes: its containers, their restarts and probes, and its status.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KubeObject } from './kube-client';
import { Container, ImageCommands, mapMountPaths, resolveCommandLine, resolveEnv } from './pod-spec';
import { execExitCode, Prober, ProbeTarget } from './probes';
import { GroupProcess, spawnGroup } from './processes';

export interface BackoffOptions {
  /** Delay before the second restart (the first is immediate, as in the kubelet). */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** A container that ran this long without crashing gets its back-off reset. */
  resetAfterMs: number;
}

export interface PodRuntimeOptions {
  pod: KubeObject;
  podIP: string;
  hostIP: string;
  podDir: string;
  images: ImageCommands;
  backoff: BackoffOptions;
  /** Folders by volume name (PodVolumes.prepare()). */
  volumeFolders: Record<string, string>;
  envSources: { configMaps: Record<string, Record<string, string>>; secrets: Record<string, Record<string, string>> };
  /** Extra env for every container (e.g. KUBERNETES_SERVICE_HOST/PORT of the test apiserver). */
  baseEnv: Record<string, string>;
  onChange: () => void;
}

interface Termination {
  exitCode: number;
  signal?: number;
  reason: string;
  startedAt: string;
  finishedAt: string;
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** One container: a process group, restarted per restartPolicy with the kubelet's back-off. */
class ContainerRuntime {
  proc: GroupProcess | undefined;
  restartCount = 0;
  ready = false;
  started = false;
  startedAt = '';
  waiting: { reason: string; message?: string } | undefined = { reason: 'ContainerCreating' };
  lastTermination: Termination | undefined;
  terminal = false; // will not run again (restartPolicy)
  private backoffMs = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private probers: Prober[] = [];
  private stopping = false;

  constructor(
    readonly spec: Container,
    private readonly pod: PodRuntime,
    /** init: runs to completion before the others; sidecar: an init container with restartPolicy Always. */
    readonly kind: 'main' | 'init' | 'sidecar' = 'main',
  ) {}

  /** An init container that exited 0 (the next one may start). */
  get completed(): boolean {
    return this.kind === 'init' && this.terminal && this.lastTermination?.exitCode === 0;
  }

  /** Starts the process now; on a config error the container waits with that reason. */
  start(): void {
    if (this.stopping) return;
    const launch = this.pod.commandFor(this.spec);
    if ('error' in launch) {
      this.waiting = { reason: 'CreateContainerConfigError', message: launch.error };
      this.pod.changed();
      return;
    }
    const logDir = path.join(this.pod.options.podDir, 'logs');
    fs.mkdirSync(logDir, { recursive: true });
    const proc = spawnGroup(launch.argv[0], {
      args: launch.argv.slice(1),
      env: launch.env,
      cwd: launch.cwd,
      logPath: path.join(logDir, `${this.spec.name}.log`),
    });
    this.proc = proc;
    this.startedAt = now();
    this.waiting = undefined;
    this.ready = false;
    const startedMs = Date.now();
    this.startProbes();
    this.pod.changed();
    void proc.exited.then(({ code, signal }) => this.onExit(proc, startedMs, code, signal));
  }

  private startProbes(): void {
    const target = this.pod.probeTarget(this.spec);
    const startup = this.spec.startupProbe;
    const readiness = this.spec.readinessProbe;
    const liveness = this.spec.livenessProbe;
    const afterStartup = (): void => {
      this.started = true;
      if (readiness) {
        this.probers.push(new Prober(readiness, target, (ok) => this.setReady(ok)));
      } else {
        this.setReady(true);
      }
      if (liveness) {
        this.probers.push(new Prober(liveness, target, (ok) => !ok && this.proc?.signal('SIGKILL')));
      }
      for (const p of this.probers) p.start();
    };
    this.started = false;
    if (startup) {
      const p = new Prober(startup, target, (ok) => {
        if (ok) {
          p.stop();
          afterStartup();
        } else {
          this.proc?.signal('SIGKILL');
        }
      });
      this.probers.push(p);
      p.start();
    } else {
      afterStartup();
    }
  }

  private stopProbes(): void {
    for (const p of this.probers) p.stop();
    this.probers = [];
  }

  private setReady(ok: boolean): void {
    if (this.ready === ok || this.proc !== undefined && !this.proc.isRunning()) return;
    this.ready = ok;
    this.pod.changed();
  }

  private onExit(proc: GroupProcess, startedMs: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.proc !== proc) return;
    this.stopProbes();
    this.ready = false;
    this.started = false;
    const signalNumber = signal ? os.constants.signals[signal] : undefined;
    const exitCode = code ?? 128 + (signalNumber ?? 1);
    this.lastTermination = {
      exitCode,
      signal: signalNumber,
      reason: exitCode === 0 ? 'Completed' : 'Error',
      startedAt: this.startedAt,
      finishedAt: now(),
    };
    const podPolicy: string = this.pod.options.pod.spec?.restartPolicy ?? 'Always';
    let restart: boolean;
    if (this.kind === 'sidecar') restart = true;
    else if (this.kind === 'init') restart = exitCode !== 0 && podPolicy !== 'Never';
    else restart = podPolicy === 'Always' || (podPolicy === 'OnFailure' && exitCode !== 0);
    if (!restart || this.stopping) {
      this.terminal = true;
      this.pod.changed();
      if (this.completed) this.pod.initCompleted();
      return;
    }
    const { initialBackoffMs, maxBackoffMs, resetAfterMs } = this.pod.options.backoff;
    if (Date.now() - startedMs >= resetAfterMs) this.backoffMs = 0;
    const delayMs = this.backoffMs;
    this.backoffMs = Math.min(maxBackoffMs, this.backoffMs === 0 ? initialBackoffMs : this.backoffMs * 2);
    this.waiting = delayMs > 0
      ? { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(delayMs / 1000)}s restarting failed container=${this.spec.name}` }
      : { reason: 'ContainerCreating' };
    this.pod.changed();
    // The kubelet counts a restart when the new container starts, not when the old one died.
    this.restartTimer = setTimeout(() => {
      this.restartCount++;
      this.start();
    }, delayMs);
  }

  /** SIGTERM, then SIGKILL after graceMs; no restart afterwards. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.stopProbes();
    await this.proc?.stop(graceMs);
  }

  /** Immediate SIGKILL (site loss): the process dies as with a power cut. */
  kill(): void {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.stopProbes();
    this.proc?.signal('SIGKILL');
  }

  status(): Record<string, unknown> {
    const running = this.proc?.isRunning() === true;
    let state: Record<string, unknown>;
    if (running) state = { running: { startedAt: this.startedAt } };
    else if (this.waiting) state = { waiting: this.waiting };
    else if (this.lastTermination) state = { terminated: this.lastTermination };
    else state = { waiting: { reason: 'ContainerCreating' } };
    const lastState = running || this.waiting ? (this.lastTermination ? { terminated: this.lastTermination } : {}) : {};
    return {
      name: this.spec.name,
      image: this.spec.image,
      imageID: `local://${this.spec.image}`,
      containerID: this.proc ? `process://${this.proc.pid}` : undefined,
      ready: running && this.ready,
      started: running && this.started,
      restartCount: this.restartCount,
      state,
      lastState,
    };
  }
}

export class PodRuntime {
  private readonly containers: ContainerRuntime[];
  private readonly initContainers: ContainerRuntime[];
  private nextInit = 0;
  private readonly startTime: string;
  private readonly transitions = new Map<string, { status: string; time: string }>();

  constructor(readonly options: PodRuntimeOptions) {
    this.startTime = options.pod.status?.startTime ?? now();
    this.containers = (options.pod.spec?.containers ?? []).map((c: Container) => new ContainerRuntime(c, this));
    this.initContainers = (options.pod.spec?.initContainers ?? []).map(
      (c: Container) => new ContainerRuntime(c, this, c.restartPolicy === 'Always' ? 'sidecar' : 'init'),
    );
    // A pod started again after an agent restart (site back) continues its restart counts.
    for (const cs of options.pod.status?.containerStatuses ?? []) {
      const c = this.containers.find((x) => x.spec.name === cs.name);
      if (c && options.pod.status?.startTime) c.restartCount = (cs.restartCount ?? 0) + 1;
    }
  }

  get uid(): string {
    return this.options.pod.metadata.uid ?? '';
  }

  changed(): void {
    this.options.onChange();
  }

  /** Runs init containers one after another (sidecars keep running), then the containers. */
  start(): void {
    while (this.nextInit < this.initContainers.length) {
      const c = this.initContainers[this.nextInit];
      c.start();
      if (c.kind !== 'sidecar') return; // initCompleted() continues
      this.nextInit++;
    }
    for (const c of this.containers) c.start();
  }

  initCompleted(): void {
    this.nextInit++;
    this.start();
  }

  private get all(): ContainerRuntime[] {
    return [...this.initContainers, ...this.containers];
  }

  /** Why a container could not start now (missing Secret key, unmapped image…), if any. */
  configError(): string | undefined {
    for (const c of this.all) {
      const launch = this.commandFor(c.spec);
      if ('error' in launch) return `${c.spec.name}: ${launch.error}`;
    }
    return undefined;
  }

  /** The pod as the downward API sees it (IPs are known here before the API status has them). */
  private podView(): KubeObject {
    const pod = this.options.pod;
    return {
      ...pod,
      status: {
        ...(pod.status ?? {}),
        podIP: this.options.podIP,
        podIPs: [{ ip: this.options.podIP }],
        hostIP: this.options.hostIP,
        hostIPs: [{ ip: this.options.hostIP }],
      },
    };
  }

  private mounts(container: Container): Array<{ mountPath: string; hostPath: string }> {
    return (container.volumeMounts ?? []).flatMap((m: { name: string; mountPath: string; subPath?: string }) => {
      const folder = this.options.volumeFolders[m.name];
      if (!folder) return [];
      const hostPath = m.subPath ? path.join(folder, m.subPath) : folder;
      if (m.subPath) fs.mkdirSync(hostPath, { recursive: true });
      return [{ mountPath: m.mountPath, hostPath }];
    });
  }

  /** Local argv, env and cwd of a container, or why it cannot start. */
  commandFor(container: Container): { argv: string[]; env: NodeJS.ProcessEnv; cwd: string } | { error: string } {
    const { configMaps, secrets } = this.options.envSources;
    const resolved = resolveEnv(this.podView(), container, {
      configMap: (name) => configMaps[name],
      secret: (name) => secrets[name],
    });
    if ('error' in resolved) return resolved;
    const line = resolveCommandLine(container, this.options.images, resolved.env);
    if ('error' in line) return line;
    const mounts = this.mounts(container);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.options.podDir,
      HOSTNAME: this.options.pod.spec?.hostname ?? this.options.pod.metadata.name,
      ...this.options.baseEnv,
    };
    for (const [k, v] of Object.entries(resolved.env)) env[k] = mapMountPaths(v, mounts);
    const cwd = container.workingDir ? mapMountPaths(container.workingDir, mounts) : this.options.podDir;
    if (!path.isAbsolute(cwd) || !fs.existsSync(cwd)) return { error: `working directory ${container.workingDir} is not a mounted volume` };
    return { argv: line.argv.map((a) => mapMountPaths(a, mounts)), env, cwd };
  }

  probeTarget(container: Container): ProbeTarget {
    const ports: Record<string, number> = {};
    for (const p of container.ports ?? []) if (p.name) ports[p.name] = p.containerPort;
    return {
      podIP: this.options.podIP,
      ports,
      exec: async (command, timeoutMs) => {
        const launch = this.commandFor({ ...container, command, args: [] });
        if ('error' in launch) return 1;
        return execExitCode(launch.argv, launch.env, launch.cwd, timeoutMs);
      },
    };
  }

  /** Stops every container with the pod's grace period. */
  async stop(graceMs: number): Promise<void> {
    // Main containers first, then sidecars, as the kubelet orders termination.
    await Promise.all(this.containers.map((c) => c.stop(graceMs)));
    await Promise.all(this.initContainers.map((c) => c.stop(graceMs)));
  }

  kill(): void {
    for (const c of this.all) c.kill();
  }

  pids(): number[] {
    return this.all.flatMap((c) => (c.proc?.isRunning() ? [c.proc.pid] : []));
  }

  anyRunning(): boolean {
    return this.all.some((c) => c.proc?.isRunning());
  }

  private condition(type: string, ok: boolean, reason?: string): Record<string, unknown> {
    const status = ok ? 'True' : 'False';
    const prev = this.transitions.get(type);
    if (!prev || prev.status !== status) this.transitions.set(type, { status, time: now() });
    return {
      type,
      status,
      lastProbeTime: null,
      lastTransitionTime: this.transitions.get(type)?.time,
      // null removes a reason left by an earlier (strategic merge) patch.
      reason: ok ? null : (reason ?? null),
      message: null,
    };
  }

  /** The status the kubelet would report now (to PATCH on pods/status). */
  status(): Record<string, unknown> {
    const statuses = this.containers.map((c) => c.status());
    const initialized = this.initContainers.every((c) => c.kind === 'sidecar' || c.completed);
    const initFailed = this.initContainers.some((c) => c.kind === 'init' && c.terminal && !c.completed);
    const allReady = initialized && statuses.every((s) => s.ready === true) &&
      this.initContainers.every((c) => c.kind !== 'sidecar' || c.status().ready === true);
    const mainRunning = this.containers.some((c) => c.proc?.isRunning());
    const allTerminal = this.containers.every((c) => c.terminal);
    let phase = 'Pending';
    if (initFailed) phase = 'Failed';
    else if (initialized && allTerminal) phase = this.containers.every((c) => c.lastTermination?.exitCode === 0) ? 'Succeeded' : 'Failed';
    else if (initialized && (mainRunning || this.containers.some((c) => c.restartCount > 0))) phase = 'Running';
    const conditions = [
      this.condition('PodReadyToStartContainers', true),
      this.condition('Initialized', initialized, 'ContainersNotInitialized'),
      this.condition('ContainersReady', allReady, 'ContainersNotReady'),
      this.condition('Ready', allReady, 'ContainersNotReady'),
    ];
    return {
      phase,
      hostIP: this.options.hostIP,
      hostIPs: [{ ip: this.options.hostIP }],
      podIP: this.options.podIP,
      // podIPs merges by ip under a strategic merge patch; replace it so an old address goes.
      podIPs: [{ $patch: 'replace' }, { ip: this.options.podIP }],
      startTime: this.startTime,
      qosClass: this.options.pod.status?.qosClass,
      conditions,
      ...(this.initContainers.length > 0 ? { initContainerStatuses: this.initContainers.map((c) => c.status()) } : {}),
      containerStatuses: statuses,
    };
  }
}
