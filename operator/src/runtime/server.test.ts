import assert from 'node:assert/strict';
import * as http from 'node:http';
import winston from 'winston';
import { OperatorMetrics } from './metrics';
import { Check, OperatorServer, startOperatorServer } from './server';

const silent = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false, timeout: 2_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('operator health and metrics server', () => {
  let server: OperatorServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('answers /healthz and /readyz from the checks (200 or 503 with details) and /metrics in Prometheus format', async () => {
    let ready: Check = { ok: false, role: 'standby', informersSynced: false, unsynced: ['Grid@*'] };
    const metrics = new OperatorMetrics({ processMetrics: false });
    metrics.setSources({ queues: () => new Map([['Grid', { depth: 3, delayed: 1, running: 2, keys: 6, retriesTotal: 0, rejectedTotal: 0, longestRunningMs: 1500 }]]), informers: () => [{ resource: 'Grid', namespace: '*', synced: true }], leader: () => true });
    metrics.reconciled('Grid', 'success', 120);
    server = await startOperatorServer({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      checks: { healthz: () => ({ ok: true, role: 'standby' }), readyz: () => ready },
      log: silent,
    });
    const health = await get(server.port, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.text), { ok: true, role: 'standby' });
    const notReady = await get(server.port, '/readyz');
    assert.equal(notReady.status, 503);
    assert.deepEqual(JSON.parse(notReady.text).unsynced, ['Grid@*']);
    ready = { ok: true, role: 'standby', informersSynced: true };
    assert.equal((await get(server.port, '/readyz')).status, 200);
    const m = await get(server.port, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.type ?? '', /^text\/plain/);
    assert.match(m.text, /archipel_operator_workqueue_depth\{kind="Grid"\} 3/);
    assert.match(m.text, /archipel_operator_workqueue_longest_running_seconds\{kind="Grid"\} 1.5/);
    assert.match(m.text, /archipel_operator_reconcile_total\{kind="Grid",result="success"\} 1/);
    assert.match(m.text, /archipel_operator_reconcile_duration_seconds_bucket\{le="0.25",kind="Grid"\} 1/);
    assert.match(m.text, /archipel_operator_informer_synced\{resource="Grid",namespace="\*"\} 1/);
    assert.match(m.text, /archipel_operator_leader 1/);
    assert.equal((await get(server.port, '/nope')).status, 404);
    assert.equal((await get(server.port, '/healthz', 'POST')).status, 405);
  });
});
