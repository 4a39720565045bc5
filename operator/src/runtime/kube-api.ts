/**
 * Plain JSON requests to the Kubernetes API, authenticated by @kubernetes/client-node's KubeConfig
 * (kubeconfig file or in-cluster service account) and sent through its undici dispatcher — the
 * same path client-node's Watch uses. Lists and watches then hold the same plain objects (the
 * generated typed clients turn list items into classes with Date fields, watch events stay JSON),
 * and one small surface is easy to fake in unit tests.
 */
import * as fs from 'node:fs';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { fetch } from 'undici';

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** A list page or an object larger than this is refused (lists are paged, see listAll). */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
/** Items per list page. */
export const LIST_PAGE_SIZE = 500;

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** A Kubernetes object as JSON; callers narrow what they read. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }>;
    [field: string]: unknown;
  };
  // Kubernetes objects are open-ended.
  [field: string]: any;
}

export interface KubeList<T = KubeObject> {
  items: T[];
  metadata: { resourceVersion?: string; continue?: string };
}

/** An answer other than 2xx, with the Status reason ('NotFound', 'Conflict', 'Expired', …). */
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

/** True for 409 (AlreadyExists or a resourceVersion conflict), from this client or client-node's ApiException. */
export function isConflict(err: unknown): boolean {
  const e = err as { statusCode?: number; code?: number } | undefined;
  return e?.statusCode === 409 || e?.code === 409;
}

export function isNotFound(err: unknown): boolean {
  const e = err as { statusCode?: number; code?: number } | undefined;
  return e?.statusCode === 404 || e?.code === 404;
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | number | undefined>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface KubeConfigSource {
  config: KubeConfig;
  /** 'kubeconfig FILE', 'in-cluster' or 'default kubeconfig'. */
  source: string;
}

/**
 * A kubeconfig file when given; else the service account when running in a pod; else the usual
 * KUBECONFIG / ~/.kube/config lookup.
 */
export function loadKubeConfig(kubeconfigPath?: string): KubeConfigSource {
  const config = new KubeConfig();
  if (kubeconfigPath) {
    config.loadFromFile(kubeconfigPath);
    return { config, source: `kubeconfig ${kubeconfigPath}` };
  }
  if (process.env.KUBERNETES_SERVICE_HOST && fs.existsSync(`${SERVICE_ACCOUNT_DIR}/token`)) {
    config.loadFromCluster();
    return { config, source: 'in-cluster' };
  }
  config.loadFromDefault();
  return { config, source: 'default kubeconfig' };
}

/** The namespace of this pod's service account, if running in a pod. */
export function inClusterNamespace(): string | undefined {
  try {
    return fs.readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export class KubeApi {
  readonly server: string;

  constructor(
    readonly config: KubeConfig,
    private readonly defaultTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
  ) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/+$/, '');
  }

  async request<T = KubeObject>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const ctx = new RequestContext(url.toString(), HttpMethod[method]);
    await this.config.applySecurityAuthentication(ctx);
    const headers: Record<string, string> = { ...ctx.getHeaders(), Accept: 'application/json' };
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['Content-Type'] = options.contentType ?? 'application/json';
    }
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
    let response;
    try {
      response = await fetch(url, { method, headers, body, dispatcher: ctx.getDispatcher(), signal: anySignal(signals) });
    } catch (err) {
      const e = err as Error;
      if (e.name === 'TimeoutError') throw new Error(`${method} ${path}: no answer within ${timeoutMs} ms`);
      throw new Error(`${method} ${path}: ${e.message}${(e as { cause?: Error }).cause ? ` (${(e as { cause?: Error }).cause!.message})` : ''}`);
    }
    const text = await readCapped(response.body, MAX_RESPONSE_BYTES, `${method} ${path}`);
    if (response.status >= 200 && response.status < 300) return (text ? JSON.parse(text) : {}) as T;
    let reason = response.statusText || 'Unknown';
    let message = text.slice(0, 500);
    try {
      const status = JSON.parse(text) as { reason?: string; message?: string };
      reason = status.reason ?? reason;
      message = status.message ?? message;
    } catch {
      // not a Status object
    }
    throw new KubeApiError(response.status, reason, `${method} ${path}: ${response.status} ${reason}: ${message}`);
  }

  /**
   * Every item of a list, page by page (all pages are one consistent snapshot at the first page's
   * resourceVersion). Items get apiVersion and kind, which list answers leave out of core types.
   */
  async listAll(path: string, options: { labelSelector?: string; apiVersion: string; kind: string; pageSize?: number }): Promise<KubeList> {
    const items: KubeObject[] = [];
    let resourceVersion: string | undefined;
    let continueToken: string | undefined;
    for (let page = 0; ; page++) {
      const list = await this.request<KubeList>('GET', path, {
        query: { labelSelector: options.labelSelector, limit: options.pageSize ?? LIST_PAGE_SIZE, continue: continueToken },
      });
      if (page === 0) resourceVersion = list.metadata?.resourceVersion;
      for (const item of list.items ?? []) items.push({ apiVersion: options.apiVersion, kind: options.kind, ...item });
      continueToken = list.metadata?.continue || undefined;
      if (!continueToken) break;
    }
    return { items, metadata: { resourceVersion } };
  }
}

/** Aborts when any of `signals` does (AbortSignal.any is Node ≥ 20.3). */
function anySignal(signals: AbortSignal[]): AbortSignal {
  return signals.length === 1 ? signals[0] : AbortSignal.any(signals);
}

async function readCapped(body: AsyncIterable<Uint8Array> | null, maxBytes: number, what: string): Promise<string> {
  if (!body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new Error(`${what}: answer larger than ${maxBytes} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}
