/**
 * The operator's settings, from `archipel operator` flags: parsed and checked here (pure), so
 * that a bad flag stops the command with a message before anything starts.
 */
import { DEFAULT_LEADER_TIMING, LeaderElectionTiming, checkLeaderTiming } from './leader';

export interface OperatorOptions {
  /** Kubeconfig file; undefined: in-cluster service account, else the default kubeconfig. */
  kubeconfig?: string;
  /** Watched namespaces; empty: all. */
  namespaces: string[];
  metricsHost: string;
  /** 0: any free port (logged). */
  metricsPort: number;
  leaderElection: boolean;
  leaseName: string;
  /** Undefined: POD_NAMESPACE, the service account's namespace, the first watched one, or default. */
  leaseNamespace?: string;
  timing: LeaderElectionTiming;
  workersPerKind: number;
  /** Lease holder identity; default `<pod or host>_<random>`. */
  identity?: string;
}

/** The flags as commander hands them over (strings, repeatable namespace). */
export interface OperatorFlags {
  kubeconfig?: string;
  namespace?: string[];
  metricsPort?: string;
  metricsAddress?: string;
  leaderElection?: boolean;
  leaseName?: string;
  leaseNamespace?: string;
  leaseDuration?: string;
  renewDeadline?: string;
  retryPeriod?: string;
  workers?: string;
}

export const DEFAULT_METRICS_PORT = 8080;
export const DEFAULT_LEASE_NAME = 'archipel-operator';
export const MAX_WORKERS_PER_KIND = 64;

export class OptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

const DNS_1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function seconds(flag: string, value: string | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 3600) throw new OptionsError(`--${flag} must be a number of seconds between 0 and 3600, not ${JSON.stringify(value)}`);
  return Math.round(n * 1000);
}

function integer(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new OptionsError(`--${flag} must be an integer from ${min} to ${max}, not ${JSON.stringify(value)}`);
  return n;
}

export function operatorOptions(flags: OperatorFlags): OperatorOptions {
  const namespaces = [...new Set((flags.namespace ?? []).flatMap((n) => n.split(',')).map((n) => n.trim()).filter(Boolean))];
  for (const ns of namespaces) {
    if (!DNS_1123_LABEL.test(ns)) throw new OptionsError(`--namespace ${JSON.stringify(ns)} is not a namespace name (lowercase letters, digits and -, at most 63)`);
  }
  if (flags.leaseNamespace !== undefined && !DNS_1123_LABEL.test(flags.leaseNamespace)) {
    throw new OptionsError(`--lease-namespace ${JSON.stringify(flags.leaseNamespace)} is not a namespace name`);
  }
  const leaseName = flags.leaseName ?? DEFAULT_LEASE_NAME;
  if (!DNS_1123_SUBDOMAIN.test(leaseName)) throw new OptionsError(`--lease-name ${JSON.stringify(leaseName)} is not a valid object name`);
  const timing: LeaderElectionTiming = {
    leaseDurationMs: seconds('lease-duration', flags.leaseDuration, DEFAULT_LEADER_TIMING.leaseDurationMs),
    renewDeadlineMs: seconds('renew-deadline', flags.renewDeadline, DEFAULT_LEADER_TIMING.renewDeadlineMs),
    retryPeriodMs: seconds('retry-period', flags.retryPeriod, DEFAULT_LEADER_TIMING.retryPeriodMs),
  };
  try {
    checkLeaderTiming(timing);
  } catch (err) {
    throw new OptionsError(`--lease-duration, --renew-deadline, --retry-period: ${(err as Error).message}`);
  }
  return {
    kubeconfig: flags.kubeconfig,
    namespaces,
    metricsHost: flags.metricsAddress ?? '0.0.0.0',
    metricsPort: integer('metrics-port', flags.metricsPort, DEFAULT_METRICS_PORT, 0, 65535),
    leaderElection: flags.leaderElection ?? true,
    leaseName,
    leaseNamespace: flags.leaseNamespace,
    timing,
    workersPerKind: integer('workers', flags.workers, 2, 1, MAX_WORKERS_PER_KIND),
  };
}
