// Peer RPC small-call rate over keep-alive connections (a figure for docs/decisions/0010-peer-rpc.md).
// Run: node dist/bench/rpc-throughput.js   (not part of npm test: speed is measured here, not asserted)
import { RpcClient, startRpcServer } from '../storage-node/src/rpc';

const CONCURRENCY = 16;
const MEASURE_MS = 3000;
const SECRET = 'bench-secret-bench-secret-bench-secret-0123';

async function main(): Promise<void> {
  const server = await startRpcServer({
    host: '127.0.0.1', port: 0, secrets: { current: SECRET }, nodeId: 'srv',
    routes: [{ method: 'POST', path: '/echo', handler: (req) => ({ ok: true, body: req.body }) }],
  });
  const client = new RpcClient({ nodeId: 'cli', secrets: { current: SECRET } });
  const peer = { id: 'srv', address: server.address };
  const body = { bucket: 'b', key: 'some/key', versionId: '0123456789abcdef' };
  try {
    for (let i = 0; i < 500; i++) await client.call(peer, 'POST', '/echo', body);
    let calls = 0;
    const endMs = Date.now() + MEASURE_MS;
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < endMs) {
        await client.call(peer, 'POST', '/echo', body);
        calls += 1;
      }
    }));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`rpc small JSON call: ${(calls / seconds).toFixed(0)} calls/s at concurrency ${CONCURRENCY}, ` +
      `${((seconds * 1e6 * CONCURRENCY) / calls).toFixed(0)} us mean latency (client and server in one process)`);
  } finally {
    client.close();
    await server.close();
  }
}

main().catch((e: Error) => {
  console.error(e.stack);
  process.exit(1);
});
