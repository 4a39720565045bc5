/**
 * Resource requests and limits of a storage node: the NodePool's, completed by defaults. Pure.
 */
import type { V1ResourceRequirements } from '@kubernetes/client-node';
import type { NodePool } from '../api/types';
import { BuildError, type ResourceSpec } from './common';

/**
 * Defaults where the NodePool says nothing. No CPU limit: throttling a node in the middle of an
 * fsync or a rebalance adds latency to every client and buys nothing on a dedicated storage node.
 * A memory limit: a leak restarts one node rather than starving its neighbours.
 */
export const DEFAULT_RESOURCES: Readonly<Required<ResourceSpec>> = {
  requests: { cpu: '500m', memory: '1Gi' },
  limits: { memory: '2Gi' },
};

const QUANTITY = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$/;
const FACTOR: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity as a number (cores or bytes), for comparisons only; undefined if malformed. */
export function quantityValue(q: string): number | undefined {
  const m = QUANTITY.exec(q);
  return m ? Number(m[1]) * FACTOR[m[2] ?? ''] : undefined;
}

type Part = { cpu?: string; memory?: string };

function clean(p: Part): Record<string, string> {
  const out: Record<string, string> = {};
  if (p.cpu !== undefined) out.cpu = p.cpu;
  if (p.memory !== undefined) out.memory = p.memory;
  return out;
}

/**
 * Requests and limits, key by key: the pool's value, else the default. The API server refuses a
 * request above its limit, so a default that would cross what the pool asks for follows it (a
 * default limit rises to the pool's request, a default request falls to the pool's limit); a
 * pool that asks for both inconsistently gets a readable error.
 */
export function nodeResources(pool: NodePool, defaults: ResourceSpec = DEFAULT_RESOURCES): V1ResourceRequirements {
  const spec = pool.spec.resources ?? {};
  const requests: Part = { ...defaults.requests, ...clean(spec.requests ?? {}) };
  const limits: Part = { ...defaults.limits, ...clean(spec.limits ?? {}) };
  for (const key of ['cpu', 'memory'] as const) {
    for (const [part, value] of [['requests', requests[key]], ['limits', limits[key]]] as const) {
      if (value !== undefined && quantityValue(value) === undefined) {
        throw new BuildError(`NodePool ${pool.metadata.name}: resources.${part}.${key} ${JSON.stringify(value)} is not a quantity`);
      }
    }
    const req = requests[key];
    const lim = limits[key];
    if (req === undefined || lim === undefined || quantityValue(req)! <= quantityValue(lim)!) continue;
    const reqAsked = spec.requests?.[key] !== undefined;
    const limAsked = spec.limits?.[key] !== undefined;
    if (reqAsked && !limAsked) limits[key] = req;
    else if (limAsked && !reqAsked) requests[key] = lim;
    else {
      const from = reqAsked ? 'spec.resources' : 'the default resources';
      throw new BuildError(`NodePool ${pool.metadata.name}: ${from}: requests.${key} (${req}) is above limits.${key} (${lim})`);
    }
  }
  const out: V1ResourceRequirements = {};
  const r = clean(requests);
  const l = clean(limits);
  if (Object.keys(r).length > 0) out.requests = r;
  if (Object.keys(l).length > 0) out.limits = l;
  return out;
}
