import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { V1EnvVar } from '@kubernetes/client-node';
// Contract test: the template must be what the storage node's own parser accepts.
import { parseNodeConfig, type NodeConfig } from '../../../storage-node/src/config';
import { BuildError } from './common';
import { grid, NS, pool, SECRETS, threeSites } from './fixtures';
import { buildNodeConfigMap, CONFIG_KEY, ENV, nodeConfigText, PATHS, SECRET_KEYS } from './node-config';
import { buildStatefulSet, CONTAINER_NAME } from './statefulset';

/** Declared with the environment parameter, which the node's parser takes since it expands `${NAME}`. */
const parseWithEnv: (text: string, baseDir: string, env: NodeJS.ProcessEnv) => NodeConfig = parseNodeConfig;

/** A pod's environment as the kubelet would give it, with mount paths mapped onto `mounts`. */
function podEnv(vars: V1EnvVar[], pod: { name: string; ip: string }, mounts: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const v of vars) {
    const field = v.valueFrom?.fieldRef?.fieldPath;
    const secret = v.valueFrom?.secretKeyRef;
    if (field === 'metadata.name') out[v.name] = pod.name;
    else if (field === 'metadata.namespace') out[v.name] = NS;
    else if (field === 'status.podIP') out[v.name] = pod.ip;
    else if (secret) {
      assert.equal(secret.key, SECRET_KEYS.adminToken);
      out[v.name] = SECRETS.adminToken;
    } else {
      assert.ok(v.value !== undefined, `${v.name} has a value`);
      const mount = Object.keys(mounts).find((m) => v.value === m || v.value!.startsWith(`${m}/`));
      out[v.name] = mount ? mounts[mount] + v.value.slice(mount.length) : v.value;
    }
  }
  return out;
}

describe('builders: the node config ConfigMap', () => {
  let tmp: string;
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-builders-')); });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('is `<grid>-config` with the node.yaml key, owned by the Grid', () => {
    const cm = buildNodeConfigMap(grid());
    assert.equal(cm.kind, 'ConfigMap');
    assert.equal(cm.metadata?.name, 'demo-config');
    assert.equal(cm.metadata?.namespace, NS);
    assert.deepEqual(Object.keys(cm.data ?? {}), [CONFIG_KEY]);
    assert.equal(cm.metadata?.ownerReferences?.[0].kind, 'Grid');
    assert.equal(cm.metadata?.ownerReferences?.[0].uid, 'uid-grid-demo');
  });

  it('refers only to variables the StatefulSet sets', () => {
    const text = nodeConfigText(grid());
    const used = [...text.replace(/^#.*$/gm, '').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]);
    assert.ok(used.length > 0);
    const c = buildStatefulSet(pool('dc1-pool'), grid(), threeSites().sites).spec?.template.spec?.containers.find((x) => x.name === CONTAINER_NAME);
    const set = new Set((c?.env ?? []).map((e) => e.name));
    for (const name of used) assert.ok(set.has(name), `${name} is set in the pod`);
    assert.ok(!/secret:|token: [^$]/.test(text), 'no secret value in the ConfigMap');
  });

  it('makes a pod a grid node: id = pod name, site and pool of its NodePool, hosts = pod IP, grid secret from the mounted file', () => {
    const g = grid({ s3: { port: 9100, region: 'eu-west-3' }, admin: { port: 9101 }, rpc: { port: 9102 } });
    const sts = buildStatefulSet(pool('dc2-pool'), g, threeSites().sites);
    const c = sts.spec!.template.spec!.containers[0];
    const secretDir = path.join(tmp, 'secret');
    fs.mkdirSync(secretDir);
    fs.writeFileSync(path.join(secretDir, SECRET_KEYS.gridSecret), SECRETS.gridSecret);
    const env = podEnv(c.env ?? [], { name: 'dc2-pool-1', ip: '10.42.0.17' }, { [PATHS.secretDir]: secretDir, [PATHS.dataMount]: path.join(tmp, 'data') });

    const cfg = parseWithEnv(buildNodeConfigMap(g).data![CONFIG_KEY], path.join(tmp, 'config'), env);
    assert.notEqual(cfg.node.id, '${POD_NAME}', 'the storage node must expand ${NAME} from its environment (storage-node/src/config.ts)');
    assert.deepEqual(cfg.node, { id: 'dc2-pool-1', site: 'dc2', pool: 'dc2-pool' });
    assert.equal(cfg.s3.host, '10.42.0.17');
    assert.equal(cfg.s3.port, 9100);
    assert.equal(cfg.s3.region, 'eu-west-3');
    assert.deepEqual(cfg.admin, { host: '10.42.0.17', port: 9101, token: SECRETS.adminToken });
    assert.equal(cfg.grid?.name, 'demo');
    assert.deepEqual(cfg.grid?.rpc, { host: '10.42.0.17', port: 9102, maxConcurrent: cfg.grid?.rpc.maxConcurrent });
    assert.deepEqual(cfg.grid?.secrets, { current: SECRETS.gridSecret });
    assert.equal(cfg.dataDir, path.join(tmp, 'data', 'data'));
    assert.deepEqual(cfg.accessKeys, []);
    assert.equal(cfg.log.format, 'json');
  });

  it('is the same text for the same Grid', () => {
    assert.equal(nodeConfigText(grid()), nodeConfigText(grid()));
    assert.deepStrictEqual(buildNodeConfigMap(grid()), buildNodeConfigMap(grid()));
  });

  it('refuses TLS and encryption at rest, which the node cannot do yet, with a message naming the field', () => {
    assert.throws(() => buildNodeConfigMap(grid({ s3: { tls: { secretName: 's3-tls' } } })),
      (e: Error) => e instanceof BuildError && /^Grid demo: spec\.s3\.tls is not supported/.test(e.message));
    assert.throws(() => buildNodeConfigMap(grid({ encryption: { enabled: true, keySecretName: 'k' } })),
      (e: Error) => e instanceof BuildError && /^Grid demo: spec\.encryption\.enabled/.test(e.message));
  });
});
