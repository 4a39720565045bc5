import assert from 'node:assert/strict';
import type { V1Container, V1StatefulSet } from '@kubernetes/client-node';
import { BuildError, gridSecretName, headlessServiceName, LABELS } from './common';
import { grid, NS, pool, podLabels, podSpec, site, threeSites } from './fixtures';
import { buildNodeConfigMap, CONFIG_HASH_ANNOTATION, CONFIG_KEY, ENV, PATHS, SECRET_KEYS } from './node-config';
import { DEFAULT_RESOURCES } from './resources';
import {
  buildStatefulSet, CONTAINER_NAME, HOSTNAME_LABEL, NODE_DRAIN_SECONDS, PRE_STOP_SLEEP_SECONDS, TERMINATION_GRACE_SECONDS, ZONE_LABEL,
} from './statefulset';

function build(p = pool('dc1-pool'), g = grid(), sites = threeSites().sites): V1StatefulSet {
  return buildStatefulSet(p, g, sites);
}

function nodeContainer(sts: V1StatefulSet): V1Container {
  const containers = podSpec(sts).containers;
  assert.equal(containers.length, 1);
  assert.equal(containers[0].name, CONTAINER_NAME);
  return containers[0];
}

const isBuildError = (pattern: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof BuildError, `a BuildError, got ${String(e)}`);
  assert.match(e.message, pattern);
  return true;
};

describe('builders: the StatefulSet of a NodePool', () => {
  it('is named after the pool, in its namespace, governed by the grid headless Service, with the pool replicas', () => {
    const sts = build(pool('dc1-pool', { replicas: 3 }));
    assert.equal(sts.apiVersion, 'apps/v1');
    assert.equal(sts.kind, 'StatefulSet');
    assert.equal(sts.metadata?.name, 'dc1-pool');
    assert.equal(sts.metadata?.namespace, NS);
    assert.equal(sts.spec?.serviceName, headlessServiceName(grid()));
    assert.equal(sts.spec?.serviceName, 'demo-nodes');
    assert.equal(sts.spec?.replicas, 3);
  });

  it('keeps the pods a scale-in is still draining when the reconciler says so', () => {
    const p = pool('dc1-pool', { replicas: 2 });
    assert.equal(buildStatefulSet(p, grid(), threeSites().sites, { replicas: 3 }).spec?.replicas, 3);
    assert.throws(() => buildStatefulSet(p, grid(), threeSites().sites, { replicas: -1 }), isBuildError(/NodePool dc1-pool: cannot run -1 replicas/));
  });

  it('labels its pods with the app, component, grid, site and pool, and selects them by a subset that never changes', () => {
    const sts = build();
    const labels = podLabels(sts);
    assert.equal(labels['app.kubernetes.io/name'], 'archipel');
    assert.equal(labels['app.kubernetes.io/component'], 'storage-node');
    assert.equal(labels['storage.archipel.io/grid'], 'demo');
    assert.equal(labels['storage.archipel.io/site'], 'dc1');
    assert.equal(labels['storage.archipel.io/pool'], 'dc1-pool');
    const selector = sts.spec?.selector.matchLabels ?? {};
    assert.deepEqual(Object.keys(selector).sort(), [LABELS.name, LABELS.component, LABELS.grid, LABELS.pool].sort());
    for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `pod label ${k}`);
  });

  it('is owned by the NodePool as its controller', () => {
    assert.deepEqual(build().metadata?.ownerReferences, [{
      apiVersion: 'storage.archipel.io/v1alpha1', kind: 'NodePool', name: 'dc1-pool', uid: 'uid-nodepool-dc1-pool', controller: true, blockOwnerDeletion: true,
    }]);
  });

  it('gives each node a volume claim of the pool size and class, mounted as its data directory and kept on scale-in', () => {
    const sts = build(pool('dc1-pool', { storage: { size: '2Ti', storageClassName: 'fast-ssd' } }));
    const claims = sts.spec?.volumeClaimTemplates ?? [];
    assert.equal(claims.length, 1);
    assert.equal(claims[0].metadata?.name, 'data');
    assert.deepEqual(claims[0].spec?.accessModes, ['ReadWriteOnce']);
    assert.deepEqual(claims[0].spec?.resources?.requests, { storage: '2Ti' });
    assert.equal(claims[0].spec?.storageClassName, 'fast-ssd');
    const mount = nodeContainer(sts).volumeMounts?.find((m) => m.name === 'data');
    assert.equal(mount?.mountPath, PATHS.dataMount);
    assert.ok(PATHS.dataDir.startsWith(`${PATHS.dataMount}/`));
    assert.deepEqual(sts.spec?.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Retain' });

    const noClass = build().spec?.volumeClaimTemplates?.[0].spec;
    assert.equal(noClass?.storageClassName, undefined, 'no class: the cluster default');
    assert.ok(!('storageClassName' in (noClass ?? {})), 'no undefined field either');
    assert.deepEqual(noClass?.resources?.requests, { storage: '10Gi' });
  });

  it('runs the pods in the site zone (required node affinity) and spreads a pool over machines (preferred anti-affinity)', () => {
    const spec = podSpec(build(pool('dc2-pool'), grid(), [site('dc1'), site('dc2', { zone: 'eu-west-3b' })]));
    assert.deepEqual(spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
      [{ matchExpressions: [{ key: ZONE_LABEL, operator: 'In', values: ['eu-west-3b'] }] }]);
    const anti = spec.affinity?.podAntiAffinity;
    assert.equal(anti?.requiredDuringSchedulingIgnoredDuringExecution, undefined, 'preferred only: a pool can outnumber machines');
    const [term] = anti?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    assert.equal(term.podAffinityTerm.topologyKey, HOSTNAME_LABEL);
    assert.deepEqual(term.podAffinityTerm.labelSelector?.matchLabels, {
      [LABELS.name]: 'archipel', [LABELS.component]: 'storage-node', [LABELS.grid]: 'demo', [LABELS.pool]: 'dc2-pool',
    });
    assert.equal(spec.nodeSelector, undefined);
  });

  it('uses the site name as zone when the Site says neither zone nor node selector', () => {
    const spec = podSpec(build(pool('dc1-pool'), grid(), [site('dc1', { zone: undefined })]));
    assert.deepEqual(spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0].matchExpressions,
      [{ key: ZONE_LABEL, operator: 'In', values: ['dc1'] }]);
  });

  it('adds the Site node selector, alone when the Site names no zone, with keys in a stable order', () => {
    const only = podSpec(build(pool('dc1-pool'), grid(), [site('dc1', { zone: undefined, nodeSelector: { rack: 'r2', 'archipel/dc': 'paris' } })]));
    assert.deepEqual(only.nodeSelector, { 'archipel/dc': 'paris', rack: 'r2' });
    assert.deepEqual(Object.keys(only.nodeSelector ?? {}), ['archipel/dc', 'rack']);
    assert.equal(only.affinity?.nodeAffinity, undefined);
    const both = podSpec(build(pool('dc1-pool'), grid(), [site('dc1', { zone: 'z1', nodeSelector: { rack: 'r2' } })]));
    assert.deepEqual(both.nodeSelector, { rack: 'r2' });
    assert.equal(both.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0].matchExpressions?.[0].values?.[0], 'z1');
  });

  it('refuses a Site whose node selector and zone no node can satisfy together', () => {
    assert.throws(() => build(pool('dc1-pool'), grid(), [site('dc1', { zone: 'a', nodeSelector: { [ZONE_LABEL]: 'b' } })]),
      isBuildError(/Site dc1: .*topology\.kubernetes\.io\/zone=b.*zone is a/));
  });

  it('probes readiness on /ready and liveness on /health of the admin port, with a startup probe before liveness', () => {
    const c = nodeContainer(build(pool('dc1-pool'), grid({ admin: { port: 7001 } })));
    assert.deepEqual(c.ports?.find((p) => p.name === 'admin'), { name: 'admin', containerPort: 7001, protocol: 'TCP' });
    assert.deepEqual(c.readinessProbe?.httpGet, { path: '/ready', port: 'admin', scheme: 'HTTP' });
    assert.deepEqual(c.livenessProbe?.httpGet, { path: '/health', port: 'admin', scheme: 'HTTP' });
    assert.deepEqual(c.startupProbe?.httpGet, { path: '/health', port: 'admin', scheme: 'HTTP' });
    const startupSeconds = (c.startupProbe?.periodSeconds ?? 0) * (c.startupProbe?.failureThreshold ?? 0);
    assert.ok(startupSeconds >= 300, `a node has ${startupSeconds} s to open its metadata`);
  });

  it('waits in preStop for endpoint removal, then leaves the node time to drain before SIGKILL', () => {
    const sts = build();
    const c = nodeContainer(sts);
    assert.deepEqual(c.lifecycle?.preStop, { sleep: { seconds: PRE_STOP_SLEEP_SECONDS } });
    const grace = podSpec(sts).terminationGracePeriodSeconds ?? 30;
    assert.equal(grace, TERMINATION_GRACE_SECONDS);
    // The node drains S3 for up to 10 s, then peer RPC for up to 10 s (storage-node/src/main.ts).
    assert.ok(NODE_DRAIN_SECONDS >= 20);
    assert.ok(grace > PRE_STOP_SLEEP_SECONDS + NODE_DRAIN_SECONDS, `grace ${grace} s covers preStop and the drain`);
  });

  it('runs as a fixed non-root user with a read-only root filesystem; only the data volume and /tmp are writable', () => {
    const sts = build();
    const spec = podSpec(sts);
    const c = nodeContainer(sts);
    assert.equal(spec.securityContext?.runAsNonRoot, true);
    assert.ok((spec.securityContext?.runAsUser ?? 0) > 0);
    assert.equal(spec.securityContext?.fsGroup, spec.securityContext?.runAsUser);
    assert.equal(spec.securityContext?.fsGroupChangePolicy, 'OnRootMismatch');
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext?.runAsNonRoot, true);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext?.capabilities, { drop: ['ALL'] });
    const writable = (c.volumeMounts ?? []).filter((m) => !m.readOnly).map((m) => m.mountPath).sort();
    assert.deepEqual(writable, [PATHS.tmp, PATHS.dataMount].sort());
    const tmp = spec.volumes?.find((v) => v.name === 'tmp');
    assert.deepEqual(tmp?.emptyDir, { sizeLimit: '1Gi' });
    assert.equal(spec.automountServiceAccountToken, false);
  });

  it('takes resources from the pool, and defaults where it says nothing', () => {
    assert.deepEqual(nodeContainer(build()).resources, { requests: DEFAULT_RESOURCES.requests, limits: DEFAULT_RESOURCES.limits });
    const asked = nodeContainer(build(pool('dc1-pool', { resources: { requests: { cpu: '2' }, limits: { cpu: '4', memory: '8Gi' } } }))).resources;
    assert.deepEqual(asked, { requests: { cpu: '2', memory: '1Gi' }, limits: { memory: '8Gi', cpu: '4' } });
    const custom = buildStatefulSet(pool('dc1-pool'), grid(), threeSites().sites, { defaultResources: { requests: { memory: '256Mi' } } });
    assert.deepEqual(nodeContainer(custom).resources, { requests: { memory: '256Mi' } });
  });

  it('lets a default limit follow a larger request, and a default request follow a smaller limit', () => {
    const big = nodeContainer(build(pool('dc1-pool', { resources: { requests: { memory: '16Gi' } } }))).resources;
    assert.deepEqual(big?.limits, { memory: '16Gi' });
    const small = nodeContainer(build(pool('dc1-pool', { resources: { limits: { memory: '512Mi' } } }))).resources;
    assert.deepEqual(small?.requests, { cpu: '500m', memory: '512Mi' });
  });

  it('refuses a pool that asks for a request above its own limit', () => {
    assert.throws(() => build(pool('dc1-pool', { resources: { requests: { cpu: '3' }, limits: { cpu: '1500m' } } })),
      isBuildError(/NodePool dc1-pool: spec\.resources: requests\.cpu \(3\) is above limits\.cpu \(1500m\)/));
  });

  it('gives the node its pod name, namespace and IP through the downward API, and its site and pool', () => {
    const env = nodeContainer(build(pool('dc2-pool'))).env ?? [];
    const by = (n: string) => env.find((e) => e.name === n);
    assert.deepEqual(by('POD_NAME')?.valueFrom?.fieldRef, { apiVersion: 'v1', fieldPath: 'metadata.name' });
    assert.deepEqual(by('POD_NAMESPACE')?.valueFrom?.fieldRef, { apiVersion: 'v1', fieldPath: 'metadata.namespace' });
    assert.deepEqual(by('POD_IP')?.valueFrom?.fieldRef, { apiVersion: 'v1', fieldPath: 'status.podIP' });
    assert.equal(by(ENV.site)?.value, 'dc2');
    assert.equal(by(ENV.pool)?.value, 'dc2-pool');
    assert.equal(new Set(env.map((e) => e.name)).size, env.length, 'no variable twice');
  });

  it('mounts the grid ConfigMap as the config file and the grid secret as a file, and passes the admin token from the Secret', () => {
    const g = grid({ admin: { secretName: 'my-admin' } });
    const sts = build(pool('dc1-pool'), g);
    const spec = podSpec(sts);
    const c = nodeContainer(sts);
    assert.deepEqual(c.args, ['node', '--config', PATHS.configFile]);
    const config = spec.volumes?.find((v) => v.name === 'config');
    assert.equal(config?.configMap?.name, buildNodeConfigMap(g).metadata?.name);
    assert.deepEqual(config?.configMap?.items, [{ key: CONFIG_KEY, path: CONFIG_KEY }]);
    assert.equal(c.volumeMounts?.find((m) => m.name === 'config')?.mountPath, PATHS.configDir);
    assert.equal(PATHS.configFile, `${PATHS.configDir}/${CONFIG_KEY}`);
    const secret = spec.volumes?.find((v) => v.name === 'grid-secret')?.secret;
    assert.equal(secret?.secretName, 'my-admin');
    assert.equal(secret?.secretName, gridSecretName(g));
    assert.deepEqual(secret?.items, [{ key: SECRET_KEYS.gridSecret, path: SECRET_KEYS.gridSecret }]);
    assert.equal(secret?.defaultMode, 0o440);
    assert.equal(c.volumeMounts?.find((m) => m.name === 'grid-secret')?.mountPath, PATHS.secretDir);
    const env = c.env ?? [];
    assert.equal(env.find((e) => e.name === ENV.gridSecretFile)?.value, `${PATHS.secretDir}/${SECRET_KEYS.gridSecret}`);
    assert.equal(env.find((e) => e.name === ENV.dataDir)?.value, PATHS.dataDir);
    assert.deepEqual(env.find((e) => e.name === ENV.adminToken)?.valueFrom, { secretKeyRef: { name: 'my-admin', key: SECRET_KEYS.adminToken } });
  });

  it('exposes the S3, admin and RPC ports of the Grid and runs the pool image, else the grid image', () => {
    const g = grid({ image: 'registry.example/archipel:1.2.3', s3: { port: 8000 }, rpc: { port: 8002 } });
    const c = nodeContainer(build(pool('dc1-pool'), g));
    assert.deepEqual(c.ports?.map((p) => [p.name, p.containerPort]), [['s3', 8000], ['admin', 9001], ['rpc', 8002]]);
    assert.equal(c.image, 'registry.example/archipel:1.2.3');
    assert.equal(nodeContainer(build(pool('dc1-pool', { image: 'other:2' }), g)).image, 'other:2');
  });

  it('starts pods in parallel and rolls updates one by one', () => {
    const sts = build();
    assert.equal(sts.spec?.podManagementPolicy, 'Parallel');
    assert.equal(sts.spec?.updateStrategy?.type, 'RollingUpdate');
  });

  it('rolls the pods when the node config changes, and only then', () => {
    const hash = (g = grid()) => build(pool('dc1-pool'), g).spec?.template.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    assert.match(hash() ?? '', /^[0-9a-f]{64}$/);
    assert.equal(hash(), hash());
    assert.notEqual(hash(grid({ s3: { port: 9100 } })), hash());
    assert.equal(hash(grid({ image: 'x:2' })), hash(), 'the image is in the pod template itself');
  });

  it('is deterministic: same input, deep-equal output, plain JSON with no undefined fields', () => {
    const a = build();
    const b = build();
    assert.deepStrictEqual(a, b);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(a)), a);
    a.spec!.template.spec!.securityContext!.runAsUser = 0;
    assert.notEqual(build().spec?.template.spec?.securityContext?.runAsUser, 0, 'outputs share no objects');
  });

  it('says which Site is missing when a NodePool names none', () => {
    assert.throws(() => build(pool('dc9-pool')),
      isBuildError(/^NodePool dc9-pool: spec\.site "dc9" does not name a Site in namespace "storage"$/));
  });

  it('refuses a NodePool whose Site belongs to another grid', () => {
    assert.throws(() => build(pool('dc1-pool'), grid(), [site('dc1', { grid: 'other' })]),
      isBuildError(/NodePool dc1-pool: Site dc1 belongs to grid "other", not "demo"/));
  });

  it('refuses a pool name too long for its pods and revision labels', () => {
    const name = `${'a'.repeat(48)}-pool`;
    assert.throws(() => build(pool(name, { site: 'dc1' })), isBuildError(/at most 52 characters/));
  });

  it('refuses objects that were not read from the API server (no uid or namespace)', () => {
    const p = pool('dc1-pool');
    delete p.metadata.uid;
    assert.throws(() => build(p), isBuildError(/NodePool dc1-pool: metadata\.uid is missing/));
    const g = grid();
    delete g.metadata.namespace;
    assert.throws(() => build(pool('dc1-pool'), g), isBuildError(/namespace/));
  });

  it('refuses what the storage node cannot do yet rather than running without it', () => {
    assert.throws(() => build(pool('dc1-pool'), grid({ s3: { tls: { secretName: 'tls' } } })), isBuildError(/spec\.s3\.tls is not supported/));
    assert.throws(() => build(pool('dc1-pool'), grid({ encryption: { enabled: true, keySecretName: 'k' } })), isBuildError(/spec\.encryption\.enabled/));
  });
});
