/**
 * The operator's HTTP endpoints: /healthz (liveness), /readyz (readiness) and /metrics
 * (Prometheus). Read-only, no body, answers in JSON (metrics in the Prometheus text format).
 *
 * Readiness: ready = informers synced and the leader election in contact with the API server —
 * the same rule for the leader and for the standby. A standby whose caches are warm is ready to
 * take over within one lease duration, which is what "ready" means for it. Making leadership part
 * of readiness would leave the standby NotReady forever, and a rolling update (maxUnavailable 0)
 * would wait on it for ever; nothing routes traffic to the operator, so readiness has no other
 * use. Who leads is in the body, in the `archipel_operator_leader` gauge and in the Lease.
 *
 * Liveness fails only for what a restart cures: an election loop that stopped making attempts.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'winston';
import type { Registry } from 'prom-client';

export interface Check {
  ok: boolean;
  [detail: string]: unknown;
}

export interface HealthChecks {
  healthz(): Check;
  readyz(): Check;
}

export interface OperatorServer {
  port: number;
  close(): Promise<void>;
}

export interface ServerOptions {
  host: string;
  port: number;
  registry: Registry;
  checks: HealthChecks;
  log: Logger;
}

const REQUEST_TIMEOUT_MS = 10_000;

export function startOperatorServer(options: ServerOptions): Promise<OperatorServer> {
  const server = http.createServer((req, res) => {
    void handle(req, res, options).catch((err: Error) => {
      options.log.error('health server request failed', { path: req.url, error: err.message });
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ ok: false, error: 'internal error' }));
    });
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      options.log.info('health and metrics server listening', { host: options.host, port });
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, options: ServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ ok: false, error: 'method not allowed' }));
    return;
  }
  if (path === '/healthz' || path === '/readyz') {
    const check = path === '/healthz' ? options.checks.healthz() : options.checks.readyz();
    const body = JSON.stringify(check);
    res.writeHead(check.ok ? 200 : 503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  if (path === '/metrics') {
    const text = await options.registry.metrics();
    res.writeHead(200, { 'Content-Type': options.registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : text);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ ok: false, error: 'not found', paths: ['/healthz', '/readyz', '/metrics'] }));
}
