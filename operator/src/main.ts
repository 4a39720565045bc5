/**
 * Wires the operator: Kubernetes client, informers, one work queue and reconciler per kind,
 * leader election, and the health and metrics server. Logs each step.
 *
 * The reconcilers are those of reconcile/ (archipelReconcilers); a test can pass others in
 * `reconcilers` (placeholderReconcilers only logs). A reconciler is a plain
 * `(key, signal) => Promise<void | { requeueAfterMs }>` registered per kind (see runtime/manager.ts).
 */
import type { Logger } from 'winston';
import { KINDS, Kind } from './api/types';
import { archipelReconcilers } from './reconcile';
import { Informers, parseKey } from './runtime/informers';
import { KubeApi, inClusterNamespace, loadKubeConfig } from './runtime/kube-api';
import { LeaderElector, defaultIdentity, kubeLeaseClient, leaseRequestTimeoutMs } from './runtime/leader';
import { ControllerManager, Reconciler } from './runtime/manager';
import { OperatorMetrics } from './runtime/metrics';
import type { OperatorOptions } from './runtime/options';
import { Check, startOperatorServer } from './runtime/server';

export interface RunningOperator {
  identity: string;
  /** Port of /healthz, /readyz and /metrics. */
  port: number;
  stop(reason: string): Promise<void>;
}

/** A stand-in per kind that only logs one "reconcile" line per run (runtime tests). */
export function placeholderReconcilers(informers: Pick<Informers, 'get'>, log: Logger): Record<Kind, Reconciler> {
  const entries = KINDS.map((kind): [Kind, Reconciler] => [
    kind,
    async (key) => {
      const { namespace, name } = parseKey(key);
      const obj = informers.get(kind, namespace, name);
      log.info('reconcile', { kind, namespace, name, generation: obj?.metadata.generation ?? null, exists: obj !== undefined });
    },
  ]);
  return Object.fromEntries(entries) as Record<Kind, Reconciler>;
}

/** The Lease's namespace: the flag, else the pod's own namespace, else a watched one, else default. */
function leaseNamespace(options: OperatorOptions): string {
  return options.leaseNamespace || process.env.POD_NAMESPACE || inClusterNamespace() || options.namespaces[0] || 'default';
}

export async function runOperator(
  options: OperatorOptions,
  baseLog: Logger,
  reconcilers?: (informers: Informers, log: Logger) => Partial<Record<Kind, Reconciler>>,
): Promise<RunningOperator> {
  const identity = options.identity ?? defaultIdentity();
  const log = baseLog.child({ identity });
  log.info('operator starting', {
    namespaces: options.namespaces.length > 0 ? options.namespaces : 'all',
    leaderElection: options.leaderElection,
    workersPerKind: options.workersPerKind,
  });

  const { config, source } = loadKubeConfig(options.kubeconfig);
  const api = new KubeApi(config);
  log.info('kubernetes client configured', { server: api.server, source });
  try {
    const version = await api.request<{ gitVersion?: string }>('GET', '/version', { timeoutMs: 5_000 });
    log.info('api server reachable', { version: version.gitVersion });
  } catch (err) {
    // Not fatal: the informers and the election retry until it answers, and /readyz says not ready.
    log.warn('api server not reachable yet', { error: (err as Error).message });
  }

  const metrics = new OperatorMetrics();
  const informers = new Informers({
    api,
    namespaces: options.namespaces,
    log,
    observer: { listed: (r, ns) => metrics.listed(r, ns), restarted: (r, ns) => metrics.restarted(r, ns) },
  });
  const manager = new ControllerManager({
    reconcilers: reconcilers ? reconcilers(informers, log) : archipelReconcilers({ api, informers, log }),
    informers,
    log,
    metrics,
    queue: { workers: options.workersPerKind },
  });

  let elector: LeaderElector | undefined;
  let lease = '';
  if (options.leaderElection) {
    const namespace = leaseNamespace(options);
    lease = `${namespace}/${options.leaseName}`;
    elector = new LeaderElector({
      identity,
      client: kubeLeaseClient(api, namespace, options.leaseName, leaseRequestTimeoutMs(options.timing)),
      timing: options.timing,
      log,
      callbacks: {
        onStartedLeading: () => manager.startLeading(),
        onStoppedLeading: (reason) => {
          // Renewal failed: another replica may lead within the lease duration; stop writing now.
          if (reason !== 'shutting down') void manager.stopLeading(reason, { abort: true });
        },
      },
    });
  }
  metrics.setSources({
    queues: () => manager.queueStats(),
    informers: () => informers.states(),
    leader: () => manager.isLeading,
  });

  const role = (): string => (manager.isLeading ? 'leader' : 'standby');
  const electionStalled = (): boolean => {
    const last = elector?.status().lastAttemptMs;
    return last !== undefined && Date.now() - last > 2 * options.timing.leaseDurationMs;
  };
  const checks = {
    healthz: (): Check => ({ ok: !electionStalled(), role: role(), ...(electionStalled() ? { error: 'leader election loop stalled' } : {}) }),
    readyz: (): Check => {
      const states = informers.states();
      const unsynced = states.filter((s) => !s.synced).map((s) => `${s.resource}@${s.namespace}`);
      const lastContactMs = elector?.status().lastContactMs;
      const apiContact = !elector || (lastContactMs !== undefined && Date.now() - lastContactMs <= options.timing.leaseDurationMs);
      return {
        ok: unsynced.length === 0 && apiContact,
        role: role(),
        reconciling: manager.isReconciling,
        informersSynced: unsynced.length === 0,
        ...(unsynced.length > 0 ? { unsynced } : {}),
        ...(elector ? { lease, holder: elector.status().holder ?? null, leaseContact: apiContact } : {}),
      };
    },
  };
  const server = await startOperatorServer({ host: options.metricsHost, port: options.metricsPort, registry: metrics.registry, checks, log });

  informers.start();
  log.info('informers started', { informers: informers.states().length });
  if (elector) elector.start();
  else manager.startLeading();

  let stopping: Promise<void> | undefined;
  return {
    identity,
    port: server.port,
    stop(reason: string): Promise<void> {
      stopping ??= (async () => {
        log.info('operator stopping', { reason });
        // Reconciles in flight finish while the Lease is still ours; then it is released.
        await manager.stopLeading(reason, { abort: false });
        await elector?.stop({ release: true });
        await informers.stop();
        await server.close();
        log.info('operator stopped', { reason });
      })();
      return stopping;
    },
  };
}
