/**
 * Informers: a local cache of every object the operator watches, kept current by client-node's
 * ListWatch (list, then watch from the list's resourceVersion), and events turned into work-queue
 * keys of the custom kinds.
 *
 * What client-node 2.x does on its own, and what this file adds:
 * - A watch answered 410 Gone ("too old resource version", as an HTTP status or as an ERROR event
 *   in the stream) makes ListWatch forget its resourceVersion and list again before the next
 *   watch: a relist, with deletes and adds for what changed meanwhile. Nothing to add.
 * - Any other failure (list refused, connection reset, 401/403, apiserver down) is passed to the
 *   'error' callbacks and the ListWatch stays stopped: it is never restarted by the library.
 *   Here, every such error restarts it after a back-off (1 s doubling to 30 s), with a fresh list
 *   (the resourceVersion is dropped first), so that nothing missed while it was down stays missed.
 * - ListWatch also reports its own abort from stop() as an error: ignored once we stopped.
 * - Synced: the first complete list of every informer (what /readyz and the first reconciles wait for).
 */
import { ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { API_VERSION, GROUP, KINDS, Kind } from '../api/types';
import { Clock, TimerHandle, sleep, systemClock } from './clock';
import { KubeApi, KubeList, KubeObject } from './kube-api';
import { backoffDelayMs } from './work-queue';

/** The label every object the operator creates carries (builders' FIELD_MANAGER). */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'archipel-operator';
export const MANAGED_BY_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;

export interface WatchedResource {
  kind: string;
  apiVersion: string;
  plural: string;
  /** Only objects matching it are cached (owned kinds: never every Pod or Secret of the cluster). */
  labelSelector?: string;
  /** A custom kind the operator reconciles; else an owned kind, whose events go to its owner. */
  primary: boolean;
}

const PLURALS: Record<Kind, string> = {
  Grid: 'grids',
  Site: 'sites',
  NodePool: 'nodepools',
  ReplicationPolicy: 'replicationpolicies',
  Bucket: 'buckets',
};

export const CUSTOM_RESOURCES: readonly WatchedResource[] = KINDS.map((kind) => ({
  kind,
  apiVersion: API_VERSION,
  plural: PLURALS[kind],
  primary: true,
}));

/**
 * Owned kinds, label-selected: the builders put the managed-by label on every object they build,
 * and on the pod template (Pods are created by the StatefulSet controller, not by us).
 * ConfigMaps and PodDisruptionBudgets are owned too; add them here when a reconciler must react
 * to someone else changing them (and give the chart's RBAC list/watch on them).
 */
export const OWNED_RESOURCES: readonly WatchedResource[] = [
  { kind: 'StatefulSet', apiVersion: 'apps/v1', plural: 'statefulsets', labelSelector: MANAGED_BY_SELECTOR, primary: false },
  { kind: 'Pod', apiVersion: 'v1', plural: 'pods', labelSelector: MANAGED_BY_SELECTOR, primary: false },
  { kind: 'Service', apiVersion: 'v1', plural: 'services', labelSelector: MANAGED_BY_SELECTOR, primary: false },
  { kind: 'Secret', apiVersion: 'v1', plural: 'secrets', labelSelector: MANAGED_BY_SELECTOR, primary: false },
];

export const WATCHED_RESOURCES: readonly WatchedResource[] = [...CUSTOM_RESOURCES, ...OWNED_RESOURCES];

/** `/apis/<group>/<version>[/namespaces/<ns>]/<plural>`, or `/api/v1/...` for the core group. */
export function resourcePath(resource: WatchedResource, namespace?: string): string {
  const base = resource.apiVersion.includes('/') ? `/apis/${resource.apiVersion}` : `/api/${resource.apiVersion}`;
  return namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${resource.plural}` : `${base}/${resource.plural}`;
}

/** The work-queue key of an object: `namespace/name`, or `name` for a cluster-scoped one. */
export function objectKey(obj: { metadata: { name: string; namespace?: string } }): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export function parseKey(key: string): { namespace?: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** A custom object to reconcile. */
export interface Target {
  kind: Kind;
  key: string;
}

export type Lookup = (kind: string, namespace: string | undefined, name: string) => KubeObject | undefined;

function ourKind(apiVersion: string, kind: string): Kind | undefined {
  return apiVersion.startsWith(`${GROUP}/`) && (KINDS as readonly string[]).includes(kind) ? (kind as Kind) : undefined;
}

/**
 * Which custom objects an event on `obj` concerns (pure): a custom object itself; for an owned
 * object, its controller owner (ownerReferences with controller: true) when that is one of our
 * kinds, or, one hop further, the owner of its controlling StatefulSet (a Pod is controlled by
 * its StatefulSet, which the NodePool controls). Owners live in the object's namespace.
 */
export function eventTargets(resource: WatchedResource, obj: KubeObject, lookup: Lookup): Target[] {
  if (resource.primary) return [{ kind: resource.kind as Kind, key: objectKey(obj) }];
  const seen = new Set<string>();
  let current: KubeObject | undefined = obj;
  for (let hop = 0; current && hop < 2; hop++) {
    const owner = (current.metadata.ownerReferences ?? []).find((ref) => ref.controller === true);
    if (!owner) return [];
    const kind = ourKind(owner.apiVersion, owner.kind);
    const namespace = obj.metadata.namespace;
    if (kind) return [{ kind, key: objectKey({ metadata: { name: owner.name, namespace } }) }];
    if (owner.kind !== 'StatefulSet' || owner.apiVersion !== 'apps/v1' || seen.has(owner.name)) return [];
    seen.add(owner.name);
    current = lookup('StatefulSet', namespace, owner.name);
  }
  return [];
}

/** What ListWatch needs from client-node's Watch (a fake in unit tests). */
export interface WatchLike {
  watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<{ abort(): void }>;
}

export type EventType = 'add' | 'update' | 'delete';

export interface RestartDelay {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RESTART_DELAY: RestartDelay = { baseMs: 1_000, maxMs: 30_000 };

export interface InformerObserver {
  /** A list completed (the first one, or a relist after 410 Gone or a restart). */
  listed?(resource: string, namespace: string): void;
  /** The informer was restarted after an error. */
  restarted?(resource: string, namespace: string): void;
  synced?(resource: string, namespace: string): void;
}

export interface ResourceInformerOptions {
  resource: WatchedResource;
  /** Undefined: every namespace. */
  namespace?: string;
  list: () => Promise<KubeList>;
  watch: WatchLike;
  onEvent(type: EventType, obj: KubeObject): void;
  log: Logger;
  clock?: Clock;
  restartDelay?: RestartDelay;
  observer?: InformerObserver;
}

/** One ListWatch (one resource in one namespace, or in all), restarted after errors. */
export class ResourceInformer {
  readonly resource: WatchedResource;
  readonly namespace: string | undefined;
  private readonly lw: ListWatch<KubeObject>;
  private readonly clock: Clock;
  private readonly restartDelay: RestartDelay;
  private stopped = true;
  private hasSynced = false;
  private errors = 0;
  private consecutiveFailures = 0;
  private restartTimer: TimerHandle | undefined;
  private syncWaiters: Array<() => void> = [];
  /** Completed lists (1 after the first sync; each relist adds one). */
  lists = 0;
  restarts = 0;
  lastError: string | undefined;

  constructor(private readonly options: ResourceInformerOptions) {
    this.resource = options.resource;
    this.namespace = options.namespace;
    this.clock = options.clock ?? systemClock;
    this.restartDelay = options.restartDelay ?? DEFAULT_RESTART_DELAY;
    const list = async (): Promise<KubeList> => {
      const result = await options.list();
      this.lists++;
      options.observer?.listed?.(this.resource.kind, this.namespaceLabel);
      return result;
    };
    // ListWatch waits before re-watching a stream that ended without events, then watches even if
    // stop() came meanwhile: its delay goes through our clock, and no watch starts once stopped.
    const guardedWatch: WatchLike = {
      watch: (path, params, callback, done) => {
        if (this.stopped) {
          done(new Error('informer stopped'));
          return Promise.resolve({ abort: () => undefined });
        }
        return options.watch.watch(path, params, callback, done);
      },
    };
    // Cast: ListWatch types its watch as the Watch class; it only calls watch().
    this.lw = new ListWatch<KubeObject>(
      resourcePath(this.resource, this.namespace),
      guardedWatch as unknown as Watch,
      list,
      false,
      this.resource.labelSelector,
      undefined,
      { delayFn: async (ms) => void (await sleep(this.clock, ms)) },
    );
    for (const type of ['add', 'update', 'delete'] as const) {
      this.lw.on(type, (obj) => {
        try {
          options.onEvent(type, obj);
        } catch (err) {
          // A throw here would be swallowed inside ListWatch's stream parsing and skip the event's resourceVersion.
          options.log.error('informer event handler failed', { resource: this.resource.kind, error: (err as Error).message });
        }
      });
    }
    this.lw.on('error', (err) => this.onError(err));
  }

  get namespaceLabel(): string {
    return this.namespace ?? '*';
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.run(false);
  }

  /** Resolves once synced, or when `signal` aborts (false). */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.hasSynced) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => resolve(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      });
    });
  }

  get(namespace: string | undefined, name: string): KubeObject | undefined {
    return this.lw.get(name, namespace);
  }

  list(): readonly KubeObject[] {
    return this.lw.list();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.lw.stop();
  }

  private async run(freshList: boolean): Promise<void> {
    if (freshList) this.dropResourceVersion();
    const errorsBefore = this.errors;
    try {
      // Resolves once the list is in the cache and the watch connected, or after an error was reported.
      await this.lw.start();
    } catch (err) {
      this.onError(err);
      return;
    }
    if (this.stopped || this.errors !== errorsBefore) return;
    this.consecutiveFailures = 0;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.options.log.info('informer synced', { resource: this.resource.kind, namespace: this.namespaceLabel, objects: this.lw.list().length });
      this.options.observer?.synced?.(this.resource.kind, this.namespaceLabel);
      for (const wake of this.syncWaiters.splice(0)) wake();
    }
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    this.errors++;
    this.consecutiveFailures++;
    this.lastError = describeError(err);
    const delayMs = backoffDelayMs(this.consecutiveFailures, this.restartDelay.baseMs, this.restartDelay.maxMs);
    this.options.log.warn('informer stopped by an error; restarting with a fresh list', {
      resource: this.resource.kind,
      namespace: this.namespaceLabel,
      error: this.lastError,
      failures: this.consecutiveFailures,
      retryInMs: delayMs,
    });
    this.clock.clearTimeout(this.restartTimer);
    this.restartTimer = this.clock.setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.restarts++;
      this.options.observer?.restarted?.(this.resource.kind, this.namespaceLabel);
      void this.run(true);
    }, delayMs);
  }

  /**
   * ListWatch lists only when it has no resourceVersion, and offers no way to drop it but a 410.
   * Its field is private in the typings only; latestResourceVersion() checks that it took.
   */
  private dropResourceVersion(): void {
    (this.lw as unknown as { resourceVersion: string }).resourceVersion = '';
    if (this.lw.latestResourceVersion() !== '') {
      this.options.log.warn('informer could not drop its resourceVersion; it resumes the watch instead of relisting', { resource: this.resource.kind });
    }
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const status = (err as { statusCode?: number; code?: number }).statusCode ?? (err as { code?: unknown }).code;
    return typeof status === 'number' ? `${status} ${err.message}` : err.message;
  }
  return String(err);
}

export interface InformersOptions {
  api: KubeApi;
  /** Namespaces to watch; empty: all. */
  namespaces: string[];
  log: Logger;
  resources?: readonly WatchedResource[];
  /** Default: client-node's Watch on api's KubeConfig. */
  watch?: WatchLike;
  clock?: Clock;
  restartDelay?: RestartDelay;
  observer?: InformerObserver;
}

export type TargetHandler = (target: Target, event: { type: EventType; resource: string; key: string }) => void;

/** Every watched resource in every watched namespace; events become targets for the queues. */
export class Informers {
  readonly namespaces: string[];
  private readonly informers: ResourceInformer[] = [];
  private readonly byKind = new Map<string, ResourceInformer[]>();
  private readonly handlers: TargetHandler[] = [];

  constructor(private readonly options: InformersOptions) {
    this.namespaces = [...new Set(options.namespaces)];
    const watch = options.watch ?? new Watch(options.api.config);
    const scopes: Array<string | undefined> = this.namespaces.length > 0 ? this.namespaces : [undefined];
    for (const resource of options.resources ?? WATCHED_RESOURCES) {
      for (const namespace of scopes) {
        const path = resourcePath(resource, namespace);
        const informer = new ResourceInformer({
          resource,
          namespace,
          list: () => options.api.listAll(path, { labelSelector: resource.labelSelector, apiVersion: resource.apiVersion, kind: resource.kind }),
          watch,
          onEvent: (type, obj) => this.dispatch(resource, type, obj),
          log: options.log,
          clock: options.clock,
          restartDelay: options.restartDelay,
          observer: options.observer,
        });
        this.informers.push(informer);
        this.byKind.set(resource.kind, [...(this.byKind.get(resource.kind) ?? []), informer]);
      }
    }
  }

  /** Called for every event, with the custom object it concerns. */
  onTarget(handler: TargetHandler): void {
    this.handlers.push(handler);
  }

  start(): void {
    for (const informer of this.informers) informer.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.stop()));
  }

  get synced(): boolean {
    return this.informers.every((i) => i.synced);
  }

  /** Resolves true once every informer has synced, false if `signal` aborts first. */
  async waitForSync(signal?: AbortSignal): Promise<boolean> {
    const results = await Promise.all(this.informers.map((i) => i.waitForSync(signal)));
    return results.every(Boolean);
  }

  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    for (const informer of this.byKind.get(kind) ?? []) {
      if (informer.namespace !== undefined && informer.namespace !== namespace) continue;
      const obj = informer.get(namespace, name);
      if (obj) return obj;
    }
    return undefined;
  }

  list(kind: string): KubeObject[] {
    return (this.byKind.get(kind) ?? []).flatMap((i) => [...i.list()]);
  }

  states(): Array<{ resource: string; namespace: string; synced: boolean; lists: number; restarts: number; lastError?: string }> {
    return this.informers.map((i) => ({
      resource: i.resource.kind,
      namespace: i.namespaceLabel,
      synced: i.synced,
      lists: i.lists,
      restarts: i.restarts,
      ...(i.lastError ? { lastError: i.lastError } : {}),
    }));
  }

  private dispatch(resource: WatchedResource, type: EventType, obj: KubeObject): void {
    const targets = eventTargets(resource, obj, (kind, ns, name) => this.get(kind, ns, name));
    const key = objectKey(obj);
    for (const target of targets) for (const handler of this.handlers) handler(target, { type, resource: resource.kind, key });
  }
}
