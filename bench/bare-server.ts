import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

/**
 * The benchmark's reference: a bare Node HTTP server doing the least a durable object store must do.
 * PUT streams the body to a temporary file, fsyncs it, renames it into place and fsyncs the folder;
 * GET streams the file back; DELETE unlinks; LIST (GET /bucket) answers a small XML list from readdir.
 * No auth, no metadata, no checksums: the machine's practical limit for the same requests.
 * Run as its own process (like the node) so that its CPU time is read from /proc the same way.
 */

export interface BareServer {
  port: number;
  close(): Promise<void>;
}

const MAX_LIST_KEYS = 1000;

function fail(res: http.ServerResponse, status: number): void {
  if (!res.headersSent) res.writeHead(status, { 'content-length': 0 });
  res.end();
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export async function startBareServer(opts: { dir: string; host: string; port: number }): Promise<BareServer> {
  fs.mkdirSync(opts.dir, { recursive: true });
  let tmpSeq = 0;
  // Object names are flattened into one file name per key, so a bucket is one folder.
  const bucketDir = (bucket: string): string => path.join(opts.dir, encodeURIComponent(bucket));
  const fileOf = (bucket: string, key: string): string => path.join(bucketDir(bucket), encodeURIComponent(key));

  const put = async (req: http.IncomingMessage, res: http.ServerResponse, bucket: string, key: string): Promise<void> => {
    if (!key) {
      fs.mkdirSync(bucketDir(bucket), { recursive: true });
      return fail(res, 200);
    }
    const dir = bucketDir(bucket);
    const tmp = path.join(dir, `.tmp-${process.pid}-${tmpSeq++}`);
    await pipeline(req, fs.createWriteStream(tmp, { flush: true })); // flush: fsync before close
    await fsp.rename(tmp, fileOf(bucket, key));
    await fsyncDir(dir);
    res.writeHead(200, { 'content-length': 0, etag: '"bare"' });
    res.end();
  };

  const get = async (res: http.ServerResponse, bucket: string, key: string, query: URLSearchParams): Promise<void> => {
    if (!key) {
      const prefix = query.get('prefix') ?? '';
      const maxKeys = Math.min(MAX_LIST_KEYS, Number(query.get('max-keys') ?? MAX_LIST_KEYS) || MAX_LIST_KEYS);
      const names = (await fsp.readdir(bucketDir(bucket)))
        .filter((n) => !n.startsWith('.tmp-'))
        .map((n) => decodeURIComponent(n))
        .filter((k) => k.startsWith(prefix))
        .sort()
        .slice(0, maxKeys);
      const body = Buffer.from(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
          `<Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${names.length}</KeyCount>` +
          `<MaxKeys>${maxKeys}</MaxKeys><IsTruncated>false</IsTruncated>` +
          names.map((k) => `<Contents><Key>${xmlEscape(k)}</Key></Contents>`).join('') +
          '</ListBucketResult>',
      );
      res.writeHead(200, { 'content-type': 'application/xml', 'content-length': body.length });
      res.end(body);
      return;
    }
    const fh = await fsp.open(fileOf(bucket, key), 'r');
    const { size } = await fh.stat();
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
    await pipeline(fh.createReadStream(), res);
  };

  const del = async (res: http.ServerResponse, bucket: string, key: string): Promise<void> => {
    if (!key) await fsp.rm(bucketDir(bucket), { recursive: true, force: true });
    else await fsp.rm(fileOf(bucket, key), { force: true });
    fail(res, 204);
  };

  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://bare');
    const [, bucket = '', ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const b = decodeURIComponent(bucket);
    let work: Promise<void>;
    if (!b) work = Promise.resolve(fail(res, 400));
    else if (req.method === 'PUT') work = put(req, res, b, key);
    else if (req.method === 'GET') work = get(res, b, key, url.searchParams);
    else if (req.method === 'DELETE') work = del(res, b, key);
    else work = Promise.resolve(fail(res, 405));
    work.catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') fail(res, 404);
      else if (!res.headersSent) fail(res, 500);
      else res.destroy();
      req.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('bare server: no TCP address');
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

function argValue(name: string, def?: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : def;
  if (v === undefined) throw new Error(`bare-server: ${name} required`);
  return v;
}

/** `node bare-server.js --dir D [--host H] [--port P]`: prints {"port":N,"pid":N} on stdout once listening. */
async function main(): Promise<void> {
  const server = await startBareServer({ dir: argValue('--dir'), host: argValue('--host', '127.0.0.1'), port: Number(argValue('--port', '0')) });
  process.stdout.write(`${JSON.stringify({ port: server.port, pid: process.pid })}\n`);
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`bare-server: ${e.message}\n`);
    process.exit(1);
  });
}
