import http from 'node:http';
import net from 'node:net';
import aws4 from 'aws4';

/** Low-level S3 requests for tests that need what an SDK will not send: broken XML, wrong hashes, odd paths. */

export interface Target {
  host: string;
  s3Port: number;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface SignedRequestOptions {
  method: string;
  /** Path as it goes on the wire (already percent-encoded where needed). */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Sign as if the request was made at this time (clock-skew tests). */
  date?: Date;
  timeoutMs?: number;
  /** Host header to send and sign instead of host:port (virtual-hosted-style tests). */
  hostHeader?: string;
}

function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export function signedRequest(t: Target, o: SignedRequestOptions): Promise<RawResponse> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.date) headers['X-Amz-Date'] = amzDate(o.date);
  const req = aws4.sign(
    { host: o.hostHeader ?? `${t.host}:${t.s3Port}`, path: o.path, method: o.method, service: 's3', region: t.region, headers, body: o.body },
    o.credentials ?? { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
  );
  return send(t.host, t.s3Port, o.method, o.path, req.headers as Record<string, string>, o.body, o.timeoutMs ?? 15_000);
}

export function send(host: string, port: number, method: string, path: string, headers: Record<string, string | number>, body: Buffer | string | undefined, timeoutMs = 15_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host, port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    r.setTimeout(timeoutMs, () => r.destroy(new Error(`request timed out after ${timeoutMs} ms`)));
    r.on('error', reject);
    if (body !== undefined) r.end(body);
    else r.end();
  });
}

/** Sends exact bytes on a fresh connection and returns what came back before the server closed or the deadline. */
export function rawExchange(host: string, port: number, bytes: Buffer | string, opts: { endAfterWrite?: boolean; timeoutMs?: number } = {}): Promise<RawResponse & { raw: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(), opts.timeoutMs ?? 5_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
      const sep = raw.indexOf('\r\n\r\n');
      const headers: http.IncomingHttpHeaders = {};
      for (const line of raw.slice(0, sep < 0 ? raw.length : sep).split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: m ? Number(m[1]) : 0, headers, body: sep < 0 ? '' : raw.slice(sep + 4), raw });
    });
    s.write(bytes, () => {
      if (opts.endAfterWrite) s.end();
    });
  });
}

/** The <Code> of an S3 XML error body. */
export function errorCode(body: string): string | undefined {
  return /<Code>([^<]+)<\/Code>/.exec(body)?.[1];
}
