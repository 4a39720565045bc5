/**
 * Test fixtures: custom resources as the operator's informers deliver them (namespace, uid), with
 * defaults filled in by the same parser the operator uses. Not a test file itself.
 */
import assert from 'node:assert/strict';
import type { V1PodSpec, V1StatefulSet } from '@kubernetes/client-node';
import type { ArchipelResource, Bucket, Grid, NodePool, Site } from '../api/types';
import { parseObject } from '../planner/parse';
import type { GridSecretValues } from './secrets';

export const NS = 'storage';

function parse<T extends ArchipelResource>(kind: T['kind'], name: string, spec: Record<string, unknown>, ns = NS): T {
  const errors: string[] = [];
  const r = parseObject({
    apiVersion: 'storage.archipel.io/v1alpha1', kind, metadata: { name, namespace: ns, uid: `uid-${kind.toLowerCase()}-${name}` }, spec,
  }, `${kind} ${name}`, errors);
  assert.deepEqual(errors, []);
  return r as T;
}

export const grid = (spec: Record<string, unknown> = {}, name = 'demo'): Grid => parse<Grid>('Grid', name, spec);
export const site = (name: string, spec: Record<string, unknown> = {}): Site => parse<Site>('Site', name, { grid: 'demo', zone: name, ...spec });
export const pool = (name: string, spec: Record<string, unknown> = {}): NodePool =>
  parse<NodePool>('NodePool', name, { site: name.replace(/-pool$/, ''), replicas: 2, storage: { size: '10Gi' }, ...spec });
export const bucket = (name: string, spec: Record<string, unknown> = {}): Bucket => parse<Bucket>('Bucket', name, { grid: 'demo', ...spec });

/** The three-site grid of examples/three-sites.yaml, in namespace `storage`. */
export function threeSites(): { grid: Grid; sites: Site[]; pools: NodePool[] } {
  return {
    grid: grid(),
    sites: [site('dc1'), site('dc2'), site('dc3', { role: 'fallback' })],
    pools: [pool('dc1-pool'), pool('dc2-pool'), pool('dc3-pool')],
  };
}

export const SECRETS: GridSecretValues = {
  gridSecret: 'g'.repeat(24) + '0123456789abcdef0123456789',
  adminToken: 'admin-token-0123456789abcdef',
};

export function podSpec(sts: V1StatefulSet): V1PodSpec {
  const spec = sts.spec?.template.spec;
  assert.ok(spec, 'the StatefulSet has a pod template');
  return spec;
}

/** The labels the StatefulSet gives its pods. */
export function podLabels(sts: V1StatefulSet): Record<string, string> {
  return sts.spec?.template.metadata?.labels ?? {};
}

/** What a Service or PDB selector picks: every key=value of the selector is on the pod. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  assert.ok(selector && Object.keys(selector).length > 0, 'a selector that selects something');
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** Freezes an object and everything it holds, so a builder that mutates its input throws. */
export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
