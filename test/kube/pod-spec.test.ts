// How the node agent maps a container spec onto a local process (pure functions).
import * as assert from 'node:assert/strict';
import { LoopbackIpPool } from './loopback-ips';
import { expandVars, fieldRefValue, imageName, mapMountPaths, resolveCommandLine, resolveEnv } from './pod-spec';

const images = {
  'archipel/storage-node': { entrypoint: ['/usr/bin/node', '/repo/dist/cli/archipel.js'], cmd: ['node'] },
  'tools/shell': ['/bin/sh'],
};

describe('node agent: container spec to local process', () => {
  it('matches images with or without tag and digest', () => {
    assert.equal(imageName('archipel/storage-node:1.2'), 'archipel/storage-node');
    assert.equal(imageName('reg:5000/archipel/storage-node:1.2@sha256:ab'), 'reg:5000/archipel/storage-node');
    assert.equal(imageName('reg:5000/archipel/storage-node'), 'reg:5000/archipel/storage-node');
  });

  it('runs the image entrypoint with its default arguments when the container sets neither', () => {
    const line = resolveCommandLine({ image: 'archipel/storage-node:dev' }, images, {});
    assert.deepEqual(line, { argv: ['/usr/bin/node', '/repo/dist/cli/archipel.js', 'node'] });
  });

  it('replaces the default arguments with args, keeping the entrypoint', () => {
    const line = resolveCommandLine({ image: 'archipel/storage-node', args: ['node', '--config', '$(CFG)'] }, images, { CFG: '/etc/a.yaml' });
    assert.deepEqual(line, { argv: ['/usr/bin/node', '/repo/dist/cli/archipel.js', 'node', '--config', '/etc/a.yaml'] });
  });

  it('lets command override the entrypoint, as in Kubernetes', () => {
    const line = resolveCommandLine({ image: 'tools/shell', command: ['/bin/echo', 'hi'], args: ['there'] }, images, {});
    assert.deepEqual(line, { argv: ['/bin/echo', 'hi', 'there'] });
  });

  it('maps a command naming an image executable onto its local command line', () => {
    const withExe = { 'archipel/storage-node': { entrypoint: ['x'], executables: { archipel: ['/usr/bin/node', '/repo/a.js'] } } };
    const line = resolveCommandLine({ image: 'archipel/storage-node', command: ['/usr/local/bin/archipel', 'node'] }, withExe, {});
    assert.deepEqual(line, { argv: ['/usr/bin/node', '/repo/a.js', 'node'] });
  });

  it('refuses an image without a local mapping', () => {
    const line = resolveCommandLine({ image: 'unknown/image' }, images, {});
    assert.ok('error' in line);
  });

  it('expands $(VAR) references, keeps unknown ones and honours $$ escapes', () => {
    assert.equal(expandVars('a $(X) $(Y) $$(X)', { X: '1' }), 'a 1 $(Y) $(X)');
  });

  it('resolves env from values, the downward API, ConfigMaps and Secrets', () => {
    const pod = {
      metadata: { name: 'p-0', namespace: 'ns', uid: 'u', labels: { app: 'x' } },
      spec: { nodeName: 'site-a-node-0' },
      status: { podIP: '127.77.1.2', hostIP: '127.76.1.1' },
    };
    const container = {
      envFrom: [{ configMapRef: { name: 'cm' }, prefix: 'CM_' }],
      env: [
        { name: 'NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
        { name: 'KEY', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
        { name: 'OPT', valueFrom: { secretKeyRef: { name: 'missing', key: 'k', optional: true } } },
        { name: 'URL', value: 'http://$(IP):80/$(CM_a)' },
      ],
    };
    const sources = { configMap: (n: string) => (n === 'cm' ? { a: 'b' } : undefined), secret: (n: string) => (n === 's' ? { k: 'v' } : undefined) };
    const result = resolveEnv(pod, container, sources);
    assert.deepEqual(result, { env: { CM_a: 'b', NAME: 'p-0', IP: '127.77.1.2', APP: 'x', KEY: 'v', URL: 'http://127.77.1.2:80/b' } });
    assert.equal(fieldRefValue(pod, 'metadata.namespace'), 'ns');
  });

  it('reports a missing required Secret instead of starting the container', () => {
    const result = resolveEnv({ metadata: { name: 'p' } }, { env: [{ name: 'K', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] },
      { configMap: () => undefined, secret: () => undefined });
    assert.deepEqual(result, { error: 'secret "s" not found' });
  });

  it('rewrites container paths under a mount to the local folder, longest mount first', () => {
    const mounts = [{ mountPath: '/data', hostPath: '/tmp/v/data' }, { mountPath: '/data/meta', hostPath: '/tmp/v/meta' }];
    assert.equal(mapMountPaths('/data/x', mounts), '/tmp/v/data/x');
    assert.equal(mapMountPaths('/data/meta/db', mounts), '/tmp/v/meta/db');
    assert.equal(mapMountPaths('--dir=/data', mounts), '--dir=/tmp/v/data');
    assert.equal(mapMountPaths('/database', mounts), '/database');
  });

  it('hands out distinct loopback pod IPs, never 127.0.0.1, and does not reuse a freed one at once', () => {
    const pool = new LoopbackIpPool('127.77');
    const a = pool.allocate();
    const b = pool.allocate();
    assert.notEqual(a, b);
    assert.match(a, /^127\.77\.\d+\.\d+$/);
    pool.release(a);
    assert.notEqual(pool.allocate(), a);
    assert.throws(() => new LoopbackIpPool('127.0'));
  });
});
