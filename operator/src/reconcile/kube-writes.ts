/**
 * The writes the reconcilers make to the API server, on runtime/kube-api.ts: server-side apply
 * with the operator's field manager, status through /status only, finalizers added and removed with
 * a patch that carries the resourceVersion (a concurrent change gives a 409 and a quiet requeue),
 * Events, and the grid Secret created once and read back.
 */
import type { Logger } from 'winston';
import { API_VERSION } from '../api/types';
import { FIELD_MANAGER } from '../builders/common';
import { isNotFound, KubeApi, KubeObject } from '../runtime/kube-api';

const PLURALS: Record<string, string> = {
  ConfigMap: 'configmaps', Secret: 'secrets', Service: 'services', Pod: 'pods', Event: 'events',
  PodDisruptionBudget: 'poddisruptionbudgets', StatefulSet: 'statefulsets',
  Grid: 'grids', Site: 'sites', NodePool: 'nodepools', ReplicationPolicy: 'replicationpolicies', Bucket: 'buckets',
};

/** `/api/v1/namespaces/NS/PLURAL[/NAME]` or `/apis/GROUP/VERSION/...`. */
export function objectPath(apiVersion: string, kind: string, namespace: string, name?: string): string {
  const plural = PLURALS[kind];
  if (!plural) throw new Error(`no REST path known for kind ${kind}`);
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  return `${base}/namespaces/${encodeURIComponent(namespace)}/${plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
}

export interface Described {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export class KubeWrites {
  /** Event messages already sent, per object and reason, so a steady state sends nothing more. */
  private readonly sentEvents = new Map<string, string>();

  constructor(private readonly api: KubeApi, private readonly log: Logger) {}

  /** Server-side apply of a desired object (forcing: the operator owns these fields). */
  async apply(obj: Described, signal?: AbortSignal): Promise<KubeObject> {
    const { apiVersion, kind, metadata } = obj;
    if (!apiVersion || !kind || !metadata?.name || !metadata.namespace) throw new Error('apply: apiVersion, kind, metadata.name and metadata.namespace are required');
    return this.api.request('PATCH', objectPath(apiVersion, kind, metadata.namespace, metadata.name), {
      body: obj,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: FIELD_MANAGER, force: 'true' },
      signal,
    });
  }

  async get(apiVersion: string, kind: string, namespace: string, name: string, signal?: AbortSignal): Promise<KubeObject | undefined> {
    try {
      return await this.api.request('GET', objectPath(apiVersion, kind, namespace, name), { signal });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Creates an object; a 409 (someone created it meanwhile) is thrown for the caller to read it back. */
  create(obj: Described, signal?: AbortSignal): Promise<KubeObject> {
    const { apiVersion, kind, metadata } = obj;
    return this.api.request('POST', objectPath(apiVersion!, kind!, metadata!.namespace!, undefined), { body: obj, query: { fieldManager: FIELD_MANAGER }, signal });
  }

  /** Writes `status` of a custom object through /status (a merge patch: arrays are replaced whole). */
  async patchStatus(kind: string, namespace: string, name: string, status: unknown, signal?: AbortSignal): Promise<void> {
    await this.api.request('PATCH', `${objectPath(API_VERSION, kind, namespace, name)}/status`, {
      body: { status },
      contentType: 'application/merge-patch+json',
      signal,
    });
  }

  /** Sets metadata.finalizers, conditional on the resourceVersion read (409 if it changed). */
  async setFinalizers(kind: string, obj: KubeObject, finalizers: string[], signal?: AbortSignal): Promise<void> {
    await this.api.request('PATCH', objectPath(API_VERSION, kind, obj.metadata.namespace!, obj.metadata.name), {
      body: { metadata: { finalizers, resourceVersion: obj.metadata.resourceVersion } },
      contentType: 'application/merge-patch+json',
      signal,
    });
  }

  /**
   * An Event on `regarding` for people (`kubectl describe`), sent once per distinct message and
   * reason; failing to send one is logged, never fatal.
   */
  async event(regarding: Described, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const ns = regarding.metadata?.namespace ?? 'default';
    const key = `${regarding.kind}/${ns}/${regarding.metadata?.name}/${reason}`;
    if (this.sentEvents.get(key) === message) return;
    if (this.sentEvents.size > 10_000) this.sentEvents.clear();
    this.sentEvents.set(key, message);
    const now = new Date().toISOString();
    try {
      await this.api.request('POST', `/api/v1/namespaces/${encodeURIComponent(ns)}/events`, {
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${regarding.metadata?.name ?? 'archipel'}.`, namespace: ns },
          involvedObject: {
            apiVersion: regarding.apiVersion, kind: regarding.kind, name: regarding.metadata?.name, namespace: ns, uid: regarding.metadata?.uid,
          },
          reason,
          message: message.slice(0, 1024),
          type,
          source: { component: FIELD_MANAGER },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
        timeoutMs: 5_000,
      });
    } catch (err) {
      this.log.warn('event not recorded', { reason, object: key, error: (err as Error).message });
    }
  }
}
