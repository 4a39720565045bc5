import crypto from 'node:crypto';
import http from 'node:http';

/**
 * A low-overhead S3 client for the benchmark: keep-alive connections (one per concurrent request),
 * SigV4 computed here with node:crypto and the signing key cached per day, bodies sent as Buffers,
 * responses counted and dropped. It spends little CPU per request, so on a 2-core machine shared by
 * client and server the measured ratios reflect the server rather than the client.
 */

/** What every benchmark client offers; each call throws on any non-2xx answer. */
export interface BenchClient {
  readonly name: string;
  createBucket(bucket: string): Promise<void>;
  put(bucket: string, key: string, body: Buffer): Promise<void>;
  /** Returns the number of body bytes received. */
  get(bucket: string, key: string): Promise<number>;
  /** ListObjectsV2; returns the number of response bytes. */
  list(bucket: string, prefix: string, maxKeys: number): Promise<number>;
  del(bucket: string, key: string): Promise<void>;
  close(): Promise<void>;
}

export type PayloadMode = 'unsigned' | 'sha256';

export interface SignedClientOptions {
  endpoint: string; // http://host:port
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  connections: number;
  /** UNSIGNED-PAYLOAD (default) or the body's sha256 in x-amz-content-sha256. */
  payload?: PayloadMode;
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const ERROR_SNIPPET_BYTES = 512;

/** RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export class SigV4Signer {
  private day = '';
  private scope = '';
  private key: Buffer = Buffer.alloc(0);

  constructor(private readonly accessKeyId: string, private readonly secretAccessKey: string, private readonly region: string, private readonly service = 's3') {}

  /**
   * Headers for one request. `canonicalPath` is the path as sent (each segment already uri-encoded,
   * S3 does not encode twice); `canonicalQuery` is sorted and encoded, or ''.
   */
  sign(method: string, canonicalPath: string, canonicalQuery: string, host: string, payloadHash: string, now = new Date()): Record<string, string> {
    const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    if (day !== this.day) {
      const hmac = (k: Buffer | string, d: string): Buffer => crypto.createHmac('sha256', k).update(d).digest();
      this.key = hmac(hmac(hmac(hmac(`AWS4${this.secretAccessKey}`, day), this.region), this.service), 'aws4_request');
      this.scope = `${day}/${this.region}/${this.service}/aws4_request`;
      this.day = day;
    }
    const signedHeaders = 'host;x-amz-content-sha256;x-amz-date';
    const canonicalRequest = `${method}\n${canonicalPath}\n${canonicalQuery}\nhost:${host}\nx-amz-content-sha256:${payloadHash}\nx-amz-date:${amzDate}\n\n${signedHeaders}\n${payloadHash}`;
    const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${this.scope}\n${crypto.createHash('sha256').update(canonicalRequest).digest('hex')}`;
    const signature = crypto.createHmac('sha256', this.key).update(stringToSign).digest('hex');
    return {
      host,
      'x-amz-date': amzDate,
      'x-amz-content-sha256': payloadHash,
      authorization: `AWS4-HMAC-SHA256 Credential=${this.accessKeyId}/${this.scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    };
  }
}

interface Transport {
  readonly name: string;
  /** Sends one request, drains the answer; `snippet` holds the start of the body for error messages. */
  request(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; bytes: number; snippet: string }>;
  close(): Promise<void>;
}

interface UndiciPool {
  request(o: { method: string; path: string; headers: Record<string, string>; body?: Buffer }): Promise<{ statusCode: number; body: AsyncIterable<Buffer> }>;
  close(): Promise<void>;
}

/** undici Pool, when the installed undici runs on this Node version. */
function undiciTransport(origin: string, connections: number): Transport | undefined {
  let Pool: new (origin: string, o: object) => UndiciPool;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    Pool = (require('undici') as { Pool: typeof Pool }).Pool;
  } catch {
    return undefined; // e.g. undici 8 needs Node >= 22.19
  }
  const pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
  return {
    name: 'undici',
    async request(method, path, headers, body) {
      const r = await pool.request({ method, path, headers, body });
      let bytes = 0;
      let snippet = '';
      for await (const c of r.body) {
        if (r.statusCode >= 300 && snippet.length < ERROR_SNIPPET_BYTES) snippet += c.toString('utf8', 0, ERROR_SNIPPET_BYTES);
        bytes += c.length;
      }
      return { status: r.statusCode, bytes, snippet };
    },
    close: () => pool.close(),
  };
}

/** node:http with a keep-alive agent: the fallback when undici cannot load. */
function httpTransport(origin: string, connections: number): Transport {
  const u = new URL(origin);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  return {
    name: 'node:http',
    request(method, path, headers, body) {
      return new Promise((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, method, path, headers: body ? { ...headers, 'content-length': String(body.length) } : headers, agent }, (res) => {
          let bytes = 0;
          let snippet = '';
          const status = res.statusCode ?? 0;
          res.on('data', (c: Buffer) => {
            if (status >= 300 && snippet.length < ERROR_SNIPPET_BYTES) snippet += c.toString('utf8', 0, ERROR_SNIPPET_BYTES);
            bytes += c.length;
          });
          res.on('end', () => resolve({ status, bytes, snippet }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
    },
    close: async () => agent.destroy(),
  };
}

export class SignedS3Client implements BenchClient {
  readonly name: string;
  readonly transportName: string;
  private readonly transport: Transport;
  private readonly signer: SigV4Signer;
  private readonly host: string;
  private readonly payload: PayloadMode;

  constructor(o: SignedClientOptions) {
    if (!Number.isInteger(o.connections) || o.connections < 1 || o.connections > 1024) throw new Error('connections: 1..1024');
    this.transport = undiciTransport(o.endpoint, o.connections) ?? httpTransport(o.endpoint, o.connections);
    this.transportName = this.transport.name;
    this.signer = new SigV4Signer(o.accessKeyId, o.secretAccessKey, o.region);
    this.host = new URL(o.endpoint).host;
    this.payload = o.payload ?? 'unsigned';
    this.name = `signed (${this.transport.name}, ${this.payload === 'unsigned' ? 'UNSIGNED-PAYLOAD' : 'sha256 payload'})`;
  }

  async createBucket(bucket: string): Promise<void> {
    const r = await this.send('PUT', `/${uriEncode(bucket)}`, '', EMPTY_SHA256);
    if (r.status === 409 && r.snippet.includes('BucketAlreadyOwnedByYou')) return;
    this.check('create bucket', r);
  }

  async put(bucket: string, key: string, body: Buffer): Promise<void> {
    const hash = this.payload === 'unsigned' ? 'UNSIGNED-PAYLOAD' : crypto.createHash('sha256').update(body).digest('hex');
    this.check('PUT', await this.send('PUT', objectPath(bucket, key), '', hash, body));
  }

  async get(bucket: string, key: string): Promise<number> {
    const r = await this.send('GET', objectPath(bucket, key), '', EMPTY_SHA256);
    this.check('GET', r);
    return r.bytes;
  }

  async list(bucket: string, prefix: string, maxKeys: number): Promise<number> {
    // Already in canonical order: list-type < max-keys < prefix.
    const query = `list-type=2&max-keys=${maxKeys}&prefix=${uriEncode(prefix)}`;
    const r = await this.send('GET', `/${uriEncode(bucket)}`, query, EMPTY_SHA256);
    this.check('LIST', r);
    return r.bytes;
  }

  async del(bucket: string, key: string): Promise<void> {
    this.check('DELETE', await this.send('DELETE', objectPath(bucket, key), '', EMPTY_SHA256));
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  private send(method: string, path: string, query: string, payloadHash: string, body?: Buffer): ReturnType<Transport['request']> {
    const headers = this.signer.sign(method, path, query, this.host, payloadHash);
    return this.transport.request(method, query ? `${path}?${query}` : path, headers, body);
  }

  private check(what: string, r: { status: number; snippet: string }): void {
    if (r.status < 200 || r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${r.snippet.slice(0, 300)}`);
  }
}

function objectPath(bucket: string, key: string): string {
  return `/${uriEncode(bucket)}/${key.split('/').map(uriEncode).join('/')}`;
}
