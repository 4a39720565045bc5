// A small JSON client for the Kubernetes REST API over HTTPS with a bearer token.
//
// Plain node:https instead of @kubernetes/client-node: the harness must work wherever the tests
// run, and client-node v2 pulls the hoisted undici (v8 needs Node >= 22) on Node 20.
import * as https from 'node:https';

const maxResponseBytes = 64 * 1024 * 1024;
const defaultTimeoutMs = 30_000;

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    creationTimestamp?: string;
    ownerReferences?: unknown[];
    [key: string]: unknown;
  };
  // Kubernetes objects are open-ended; callers narrow what they read.
  spec?: any;
  status?: any;
  [key: string]: any;
};

export interface KubeList<T = KubeObject> {
  items: T[];
  metadata: { resourceVersion?: string };
}

export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export interface KubeClientOptions {
  server: string; // https://127.0.0.1:PORT
  caPem: string;
  token: string;
}

export type PatchType = 'merge' | 'strategic' | 'json' | 'apply';

const patchContentTypes: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
};

export class KubeClient {
  private readonly agent: https.Agent;
  private readonly url: URL;

  constructor(readonly options: KubeClientOptions) {
    this.url = new URL(options.server);
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca: options.caPem });
  }

  close(): void {
    this.agent.destroy();
  }

  async request<T = KubeObject>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
    timeoutMs = defaultTimeoutMs,
  ): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = https.request(
        {
          agent: this.agent,
          host: this.url.hostname,
          port: this.url.port,
          method,
          path,
          headers: {
            Authorization: `Bearer ${this.options.token}`,
            Accept: 'application/json',
            ...(payload ? { 'Content-Type': contentType, 'Content-Length': payload.length } : {}),
          },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxResponseBytes) {
              req.destroy(new Error(`response larger than ${maxResponseBytes} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              try {
                resolve((text ? JSON.parse(text) : {}) as T);
              } catch (err) {
                reject(err);
              }
              return;
            }
            let reason = 'Unknown';
            let message = text.slice(0, 500);
            try {
              const parsed = JSON.parse(text) as { reason?: string; message?: string };
              reason = parsed.reason ?? reason;
              message = parsed.message ?? message;
            } catch {
              // not a Status object
            }
            reject(new KubeApiError(status, reason, `${method} ${path}: ${status} ${message}`));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  get<T = KubeObject>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /** GET that maps 404 to undefined. */
  async getOptional<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 404) return undefined;
      throw err;
    }
  }

  list<T = KubeObject>(path: string): Promise<KubeList<T>> {
    return this.get<KubeList<T>>(path);
  }

  create<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  /** POST that treats AlreadyExists as success. */
  async ensure(path: string, body: KubeObject): Promise<void> {
    try {
      await this.create(path, body);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.statusCode === 409)) throw err;
    }
  }

  patch<T = KubeObject>(path: string, body: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.request<T>('PATCH', path, body, patchContentTypes[type]);
  }

  /** Server-side apply with a named field manager. */
  apply<T = KubeObject>(path: string, body: KubeObject, fieldManager: string): Promise<T> {
    const sep = path.includes('?') ? '&' : '?';
    return this.patch<T>(`${path}${sep}fieldManager=${encodeURIComponent(fieldManager)}&force=true`, body, 'apply');
  }

  /** DELETE that maps 404 to success. */
  async delete(path: string, options?: Record<string, unknown>): Promise<void> {
    try {
      await this.request('DELETE', path, options ? { kind: 'DeleteOptions', apiVersion: 'v1', ...options } : undefined);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.statusCode === 404)) throw err;
    }
  }
}

/** Polls `probe` until it returns a value other than undefined/false, or throws after timeoutMs. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
