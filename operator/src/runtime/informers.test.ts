import assert from 'node:assert/strict';
import winston from 'winston';
import { FakeClock, flushMicrotasks } from './clock';
import {
  CUSTOM_RESOURCES,
  EventType,
  Informers,
  MANAGED_BY_SELECTOR,
  OWNED_RESOURCES,
  ResourceInformer,
  WatchLike,
  WatchedResource,
  eventTargets,
  objectKey,
  parseKey,
  resourcePath,
} from './informers';
import type { KubeApi, KubeList, KubeObject } from './kube-api';

const silent = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

interface WatchCall {
  path: string;
  params: Record<string, unknown>;
  send(type: string, obj: unknown): void;
  end(err?: unknown): void;
  aborted: boolean;
}

/** A Watch whose streams the test drives: each watch() call becomes a WatchCall. */
class FakeWatch implements WatchLike {
  readonly calls: WatchCall[] = [];
  /** Runs inside watch(), before it returns (e.g. answer 410 at once). */
  onCall?: (call: WatchCall) => void;

  async watch(path: string, params: Record<string, unknown>, callback: (phase: string, obj: any) => void, done: (err: any) => void): Promise<{ abort(): void }> {
    let ended = false;
    const call: WatchCall = {
      path,
      params: { ...params },
      aborted: false,
      send: (type, obj) => callback(type, obj),
      end: (err) => {
        if (ended) return;
        ended = true;
        done(err ?? null);
      },
    };
    this.calls.push(call);
    this.onCall?.(call);
    return {
      abort: () => {
        call.aborted = true;
        call.end(Object.assign(new Error('This operation was aborted'), { name: 'AbortError' }));
      },
    };
  }

  last(): WatchCall {
    return this.calls[this.calls.length - 1];
  }
}

async function until(what: string, condition: () => boolean, deadlineMs = 2_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await flushMicrotasks();
  }
}

const grid = (name: string, rv: string, generation = 1, namespace = 'team-a'): KubeObject => ({
  apiVersion: 'storage.archipel.io/v1alpha1',
  kind: 'Grid',
  metadata: { name, namespace, resourceVersion: rv, generation, uid: `uid-${name}` },
});

const gridResource = CUSTOM_RESOURCES.find((r) => r.kind === 'Grid')!;

describe('ResourceInformer (client-node ListWatch with restarts)', () => {
  let clock: FakeClock;
  let watch: FakeWatch;
  let lists: Array<() => KubeList | Promise<KubeList>>;
  let listCalls: number;
  let events: Array<[EventType, string]>;
  let informer: ResourceInformer;

  const start = (resource: WatchedResource = gridResource, namespace?: string): ResourceInformer => {
    informer = new ResourceInformer({
      resource,
      namespace,
      list: async () => {
        const next = lists[Math.min(listCalls, lists.length - 1)];
        listCalls++;
        return next();
      },
      watch,
      onEvent: (type, obj) => events.push([type, obj.metadata.name]),
      log: silent,
      clock,
      restartDelay: { baseMs: 1_000, maxMs: 30_000 },
    });
    informer.start();
    return informer;
  };

  beforeEach(() => {
    clock = new FakeClock();
    watch = new FakeWatch();
    lists = [];
    listCalls = 0;
    events = [];
  });

  afterEach(async () => {
    await informer?.stop();
  });

  it('lists, then watches from the list resourceVersion with the label selector, and reports synced', async () => {
    lists = [() => ({ items: [grid('g1', '10')], metadata: { resourceVersion: '12' } })];
    const pods = OWNED_RESOURCES.find((r) => r.kind === 'Pod')!;
    lists = [() => ({ items: [], metadata: { resourceVersion: '12' } })];
    start(pods, 'team-a');
    assert.equal(informer.synced, false);
    assert.equal(await informer.waitForSync(), true);
    assert.equal(watch.calls.length, 1);
    assert.equal(watch.last().path, '/api/v1/namespaces/team-a/pods');
    assert.deepEqual(watch.last().params, { resourceVersion: '12', labelSelector: MANAGED_BY_SELECTOR });
  });

  it('turns list items and watch events into add, update and delete', async () => {
    lists = [() => ({ items: [grid('g1', '10')], metadata: { resourceVersion: '12' } })];
    start();
    await informer.waitForSync();
    watch.last().send('ADDED', grid('g2', '13'));
    watch.last().send('MODIFIED', grid('g1', '14', 2));
    watch.last().send('DELETED', grid('g2', '15'));
    assert.deepEqual(events, [['add', 'g1'], ['add', 'g2'], ['update', 'g1'], ['delete', 'g2']]);
    assert.equal(informer.get('team-a', 'g1')?.metadata.generation, 2);
    assert.equal(informer.get('team-a', 'g2'), undefined);
  });

  it('relists when the watch is answered 410 Gone, and reports what changed meanwhile', async () => {
    lists = [
      () => ({ items: [grid('g1', '10'), grid('g2', '11')], metadata: { resourceVersion: '12' } }),
      () => ({ items: [grid('g1', '30', 3), grid('g3', '31')], metadata: { resourceVersion: '40' } }),
    ];
    start();
    await informer.waitForSync();
    events = [];
    // The apiserver compacted past 12: the reconnect is refused with HTTP 410.
    watch.last().end(Object.assign(new Error('Gone'), { statusCode: 410 }));
    await until('watch after the relist', () => watch.calls.length === 2);
    assert.equal(listCalls, 2);
    assert.equal(informer.lists, 2);
    assert.equal(watch.last().params.resourceVersion, '40', 'watches from the new list');
    assert.deepEqual(events.sort(), [['add', 'g3'], ['delete', 'g2'], ['update', 'g1']]);
    assert.equal(informer.restarts, 0, 'handled by ListWatch itself, not a restart');
  });

  it('relists when the stream carries an ERROR event with code 410 (too old resource version)', async () => {
    lists = [
      () => ({ items: [grid('g1', '10')], metadata: { resourceVersion: '12' } }),
      () => ({ items: [grid('g1', '10')], metadata: { resourceVersion: '50' } }),
    ];
    start();
    await informer.waitForSync();
    watch.last().send('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 12 (45)' });
    watch.last().end();
    await until('relist and watch', () => watch.calls.length === 2);
    assert.equal(listCalls, 2);
    assert.equal(watch.last().params.resourceVersion, '50');
  });

  it('restarts after any other error, with a fresh list, after a growing back-off that a success resets', async () => {
    let failLists = 0;
    lists = [() => ({ items: [grid('g1', '10')], metadata: { resourceVersion: '12' } })];
    start();
    await informer.waitForSync();
    // Connection reset: ListWatch reports the error and stops; the informer restarts it.
    lists = [
      () => {
        if (failLists-- > 0) throw new Error('connect ECONNREFUSED');
        return { items: [grid('g2', '60')], metadata: { resourceVersion: '61' } };
      },
    ];
    listCalls = 0;
    failLists = 2;
    events = [];
    watch.last().end(new Error('read ECONNRESET'));
    await flushMicrotasks();
    assert.equal(listCalls, 0, 'not restarted before the back-off');
    await clock.advance(999);
    assert.equal(listCalls, 0);
    await clock.advance(1);
    await until('first restart (list refused)', () => listCalls === 1);
    await clock.advance(1_999);
    assert.equal(listCalls, 1, 'second failure waits 2 s');
    await clock.advance(1);
    await until('second restart (list refused)', () => listCalls === 2);
    await clock.advance(4_000);
    await until('third restart lists', () => listCalls === 3 && watch.calls.length === 2);
    assert.equal(informer.restarts, 3);
    assert.equal(watch.last().params.resourceVersion, '61', 'a fresh list, not a resumed watch from 12');
    assert.deepEqual(events.sort(), [['add', 'g2'], ['delete', 'g1']]);
    // A success reset the back-off: the next error waits the base delay again.
    watch.last().end(new Error('read ECONNRESET'));
    await clock.advance(1_000);
    await until('restart after 1 s', () => listCalls === 4);
  });

  it('does not restart after stop (ListWatch reports its own abort as an error)', async () => {
    lists = [() => ({ items: [], metadata: { resourceVersion: '12' } })];
    start();
    await informer.waitForSync();
    const call = watch.last();
    await informer.stop();
    assert.equal(call.aborted, true);
    await clock.advance(60_000);
    assert.equal(listCalls, 1);
    assert.equal(watch.calls.length, 1);
    assert.equal(clock.pendingTimers(), 0);
  });

  it('starts no watch once stopped, even when ListWatch was waiting to reconnect', async () => {
    lists = [() => ({ items: [], metadata: { resourceVersion: '12' } })];
    start();
    await informer.waitForSync();
    watch.last().end(); // server closed the stream: immediate re-watch (no event yet, so no delay)
    await until('second watch', () => watch.calls.length === 2);
    watch.last().end(); // closed again without an event: ListWatch waits 1 s first
    await flushMicrotasks();
    await informer.stop();
    await clock.advance(60_000);
    assert.equal(watch.calls.length, 2);
  });
});

describe('eventTargets', () => {
  const sts: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: {
      name: 'dc1-pool',
      namespace: 'team-a',
      ownerReferences: [{ apiVersion: 'storage.archipel.io/v1alpha1', kind: 'NodePool', name: 'dc1-pool', uid: 'u1', controller: true }],
    },
  };
  const owned = (kind: string, refs: KubeObject['metadata']['ownerReferences']): KubeObject => ({
    apiVersion: 'v1',
    kind,
    metadata: { name: 'x', namespace: 'team-a', ownerReferences: refs },
  });
  const resource = (kind: string): WatchedResource => [...CUSTOM_RESOURCES, ...OWNED_RESOURCES].find((r) => r.kind === kind)!;
  const lookup = (kind: string, ns: string | undefined, name: string): KubeObject | undefined =>
    kind === 'StatefulSet' && ns === 'team-a' && name === 'dc1-pool' ? sts : undefined;

  it('a custom object targets itself', () => {
    assert.deepEqual(eventTargets(resource('Bucket'), { metadata: { name: 'b', namespace: 'team-a' } }, lookup), [{ kind: 'Bucket', key: 'team-a/b' }]);
  });

  it('an owned object targets its controller owner of our kinds', () => {
    const secret = owned('Secret', [
      { apiVersion: 'v1', kind: 'ConfigMap', name: 'not-controller', uid: 'u0' },
      { apiVersion: 'storage.archipel.io/v1alpha1', kind: 'Bucket', name: 'records', uid: 'u2', controller: true },
    ]);
    assert.deepEqual(eventTargets(resource('Secret'), secret, lookup), [{ kind: 'Bucket', key: 'team-a/records' }]);
    assert.deepEqual(eventTargets(resource('StatefulSet'), sts, lookup), [{ kind: 'NodePool', key: 'team-a/dc1-pool' }]);
  });

  it('a Pod targets the owner of its StatefulSet', () => {
    const pod = owned('Pod', [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'dc1-pool', uid: 'u3', controller: true }]);
    assert.deepEqual(eventTargets(resource('Pod'), pod, lookup), [{ kind: 'NodePool', key: 'team-a/dc1-pool' }]);
  });

  it('ignores objects without a controller owner, owned by other kinds, or whose StatefulSet is unknown', () => {
    assert.deepEqual(eventTargets(resource('Service'), owned('Service', undefined), lookup), []);
    assert.deepEqual(eventTargets(resource('Service'), owned('Service', [{ apiVersion: 'storage.archipel.io/v1alpha1', kind: 'Grid', name: 'g', uid: 'u' }]), lookup), []);
    assert.deepEqual(eventTargets(resource('Pod'), owned('Pod', [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'r', uid: 'u', controller: true }]), lookup), []);
    assert.deepEqual(eventTargets(resource('Pod'), owned('Pod', [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'gone', uid: 'u', controller: true }]), lookup), []);
    assert.deepEqual(eventTargets(resource('Secret'), owned('Secret', [{ apiVersion: 'other.io/v1', kind: 'Grid', name: 'g', uid: 'u', controller: true }]), lookup), []);
  });
});

describe('informer paths and keys', () => {
  it('builds paths for custom and core kinds, in one namespace or all', () => {
    const grids = CUSTOM_RESOURCES.find((r) => r.kind === 'Grid')!;
    const policies = CUSTOM_RESOURCES.find((r) => r.kind === 'ReplicationPolicy')!;
    const sets = OWNED_RESOURCES.find((r) => r.kind === 'StatefulSet')!;
    const secrets = OWNED_RESOURCES.find((r) => r.kind === 'Secret')!;
    assert.equal(resourcePath(grids), '/apis/storage.archipel.io/v1alpha1/grids');
    assert.equal(resourcePath(policies, 'ns1'), '/apis/storage.archipel.io/v1alpha1/namespaces/ns1/replicationpolicies');
    assert.equal(resourcePath(sets, 'ns1'), '/apis/apps/v1/namespaces/ns1/statefulsets');
    assert.equal(resourcePath(secrets), '/api/v1/secrets');
    assert.deepEqual(CUSTOM_RESOURCES.map((r) => r.plural), ['grids', 'sites', 'nodepools', 'replicationpolicies', 'buckets']);
    assert.ok(OWNED_RESOURCES.every((r) => r.labelSelector === 'app.kubernetes.io/managed-by=archipel-operator'));
  });

  it('keys are namespace/name and parse back', () => {
    assert.equal(objectKey({ metadata: { name: 'g', namespace: 'ns' } }), 'ns/g');
    assert.deepEqual(parseKey('ns/g'), { namespace: 'ns', name: 'g' });
    assert.deepEqual(parseKey('cluster-wide'), { name: 'cluster-wide' });
  });
});

describe('Informers', () => {
  const fakeApi = (lists: Record<string, KubeList>, seen: string[]): KubeApi =>
    ({
      config: {},
      listAll: async (path: string) => {
        seen.push(path);
        return lists[path] ?? { items: [], metadata: { resourceVersion: '1' } };
      },
    }) as unknown as KubeApi;

  it('watches each resource in each listed namespace and sends owners of events to the handler', async () => {
    const seen: string[] = [];
    const watch = new FakeWatch();
    const api = fakeApi({ '/apis/storage.archipel.io/v1alpha1/namespaces/b/grids': { items: [grid('g1', '5', 1, 'b')], metadata: { resourceVersion: '6' } } }, seen);
    const informers = new Informers({ api, namespaces: ['a', 'b', 'a'], log: silent, watch, clock: new FakeClock() });
    const targets: string[] = [];
    informers.onTarget((t, e) => targets.push(`${e.type} ${e.resource} ${e.key} -> ${t.kind} ${t.key}`));
    informers.start();
    assert.equal(await informers.waitForSync(), true);
    assert.equal(informers.synced, true);
    assert.equal(seen.length, 9 * 2, 'nine resources in two namespaces');
    assert.ok(seen.includes('/api/v1/namespaces/a/pods'));
    assert.ok(!seen.some((p) => !p.includes('/namespaces/')), 'nothing cluster-wide');
    assert.deepEqual(targets, ['add Grid b/g1 -> Grid b/g1']);
    const secretWatch = watch.calls.find((c) => c.path === '/api/v1/namespaces/b/secrets')!;
    secretWatch.send('ADDED', {
      apiVersion: 'v1', kind: 'Secret',
      metadata: { name: 'g1-admin', namespace: 'b', resourceVersion: '7', ownerReferences: [{ apiVersion: 'storage.archipel.io/v1alpha1', kind: 'Grid', name: 'g1', uid: 'u', controller: true }] },
    });
    assert.deepEqual(targets[1], 'add Secret b/g1-admin -> Grid b/g1');
    assert.equal(informers.get('Grid', 'b', 'g1')?.metadata.generation, 1);
    assert.equal(informers.get('Grid', 'a', 'g1'), undefined);
    assert.deepEqual(informers.list('Grid').map((o) => o.metadata.name), ['g1']);
    await informers.stop();
  });

  it('watches cluster-wide when no namespace is given', async () => {
    const seen: string[] = [];
    const informers = new Informers({ api: fakeApi({}, seen), namespaces: [], log: silent, watch: new FakeWatch(), clock: new FakeClock() });
    informers.start();
    await informers.waitForSync();
    assert.deepEqual(seen.sort(), [
      '/api/v1/pods', '/api/v1/secrets', '/api/v1/services', '/apis/apps/v1/statefulsets',
      '/apis/storage.archipel.io/v1alpha1/buckets', '/apis/storage.archipel.io/v1alpha1/grids',
      '/apis/storage.archipel.io/v1alpha1/nodepools', '/apis/storage.archipel.io/v1alpha1/replicationpolicies',
      '/apis/storage.archipel.io/v1alpha1/sites',
    ]);
    await informers.stop();
  });
});
