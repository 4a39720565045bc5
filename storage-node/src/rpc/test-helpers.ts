import http from 'node:http';
import { RpcClient, RpcClientOptions, RpcPeer } from './client';
import { RpcServer, RpcServerOptions, startRpcServer } from './server';

/** Helpers for the RPC tests: every server and client started here is closed by `closeAll`. */
export const SECRET_A = 'grid-secret-a-0123456789';
export const SECRET_B = 'grid-secret-b-0123456789';
export const SECRET_C = 'grid-secret-c-0123456789';

const servers: RpcServer[] = [];
const clients: RpcClient[] = [];

export async function serve(o: Partial<RpcServerOptions> & Pick<RpcServerOptions, 'routes'>): Promise<RpcServer> {
  const s = await startRpcServer({ host: '127.0.0.2', port: 0, secrets: { current: SECRET_A }, nodeId: 'srv', ...o });
  servers.push(s);
  return s;
}

export function client(o: Partial<RpcClientOptions> = {}): RpcClient {
  const c = new RpcClient({ nodeId: 'cli', secrets: { current: SECRET_A }, ...o });
  clients.push(c);
  return c;
}

export function peerOf(s: RpcServer, id = 'srv'): RpcPeer {
  return { id, address: s.address };
}

export async function closeAll(): Promise<void> {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close(1000)));
}

/** Waits until `cond` holds, polling, or fails after `deadlineMs`. */
export async function waitFor(cond: () => boolean, deadlineMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > deadlineMs) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - start;
}

/** A plain HTTP request with chosen headers, to play an outsider or a forger. */
export function rawRequest(address: string, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; json: any; headers: http.IncomingHttpHeaders }> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A promise with its resolver, to hold a handler until the test lets it go. */
export function latch(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}
