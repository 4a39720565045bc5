// Admin API for buckets and access keys, for the operator and for people (docs/decisions/0015-access-grants.md).
// Input is checked here with readable refusals; the data model (model/store.ts) makes the change durable
// and, in a grid, replicated to a majority of nodes before the answer.
import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Layout } from '../layout/types';
import { grantProblems } from '../meta/grants';
import type { AccessGrant, AccessKeyRecord, BucketRecord, VersioningState } from '../meta/types';
import { ADMIN_OWNER, Store } from '../model/store';
import { isS3Error } from '../s3/error';
import { validateBucketName } from '../s3/names';
import type {
  AccessKeyInfo, BucketInfo, CreateAccessKeyResponse, ListAccessKeysResponse, ListBucketsResponse,
} from './api-types';
import { AdminError, AdminRoute, readJsonBody, sendJson } from './server';

export interface BucketKeyRoutesDeps {
  store: Store;
  /** Region of buckets created here (the node's S3 region). */
  region: string;
  /** The grid's layout (its policies can be bound to buckets); undefined on a stand-alone node. */
  layout?: () => Layout | undefined;
  /** Why the node cannot serve data right now (a grid node without a layout), or undefined. */
  unavailable?: () => string | undefined;
  /** Resolves once the node can serve or a short wait is over (a node joining a grid catches up first). */
  whenAvailable?: () => Promise<void>;
}

/** Admin bodies are tiny; a grant list of MAX_GRANTS fits many times over. */
const MAX_BODY_BYTES = 64 * 1024;
const MAX_KEY_NAME_CHARS = 128;
const VERSIONING: readonly string[] = ['Enabled', 'Suspended', 'Unversioned'];
const ACCESS_KEY_ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** 20 characters of base32 after the prefix: 100 random bits, collisions are not a concern. */
const ACCESS_KEY_ID_RANDOM_CHARS = 20;
/** 30 random bytes: 240 bits, 40 characters of base64url. */
const SECRET_BYTES = 30;

const BUCKET_PATH = /^\/v1\/buckets\/([^/]{1,255})$/;
const KEY_PATH = /^\/v1\/keys\/([A-Za-z0-9_-]{1,128})$/;
const GRANTS_PATH = /^\/v1\/keys\/([A-Za-z0-9_-]{1,128})\/grants$/;

export function newAccessKeyId(): string {
  const bytes = crypto.randomBytes(ACCESS_KEY_ID_RANDOM_CHARS);
  let id = 'AK';
  for (const b of bytes) id += ACCESS_KEY_ID_CHARS[b & 31];
  return id;
}

export function newSecretAccessKey(): string {
  return crypto.randomBytes(SECRET_BYTES).toString('base64url');
}

export function bucketInfo(b: BucketRecord): BucketInfo {
  return {
    name: b.name, owner: b.owner === ADMIN_OWNER ? null : b.owner, versioning: b.versioning, objectLock: b.objectLockEnabled,
    policy: b.policy ?? null, region: b.region, createdAt: new Date(b.createdMs).toISOString(),
  };
}

/** Never the secret: it is shown once, in the answer to the creation. */
export function accessKeyInfo(k: AccessKeyRecord): AccessKeyInfo {
  return { accessKeyId: k.accessKeyId, name: k.name, createdAt: new Date(k.createdMs).toISOString(), grants: k.grants.map((g) => ({ ...g })) };
}

function invalid(message: string): AdminError {
  return new AdminError(400, 'InvalidRequest', message);
}

function unprocessable(code: string, message: string): AdminError {
  return new AdminError(422, code, message);
}

/** A JSON object body whose fields are all in `allowed`. */
async function objectBody(req: IncomingMessage, allowed: readonly string[]): Promise<Record<string, unknown>> {
  const body = await readJsonBody(req, MAX_BODY_BYTES);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid('the body must be a JSON object');
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw invalid(`unknown fields: ${unknown.slice(0, 5).join(', ')} (allowed: ${allowed.join(', ')})`);
  return body as Record<string, unknown>;
}

function checkGrants(grants: unknown): AccessGrant[] {
  const problems = grantProblems(grants);
  if (problems.length > 0) throw invalid(problems.slice(0, 5).join('; '));
  return (grants as AccessGrant[]).map((g) => ({ bucket: g.bucket, access: g.access }));
}

/** Refusals of the data model (S3Error) keep their code and status; a grid that cannot reach a majority is 503. */
async function viaStore<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isS3Error(e)) throw new AdminError(e.httpStatus, e.code, e.message);
    if (e instanceof Error && e.name === 'QuorumError') {
      throw new AdminError(503, 'ServiceUnavailable', `not enough nodes reachable to replicate the change; retry later (${e.message})`, { 'retry-after': '5' });
    }
    throw e;
  }
}

export function bucketKeyRoutes(deps: BucketKeyRoutesDeps): AdminRoute[] {
  const { store } = deps;
  const available = async (): Promise<void> => {
    await deps.whenAvailable?.();
    const why = deps.unavailable?.();
    if (why !== undefined) throw new AdminError(503, 'ServiceUnavailable', why, { 'retry-after': '5' });
  };
  const bucketOr404 = (name: string): BucketRecord => {
    const b = store.meta.getBucket(name);
    if (!b) throw new AdminError(404, 'NoSuchBucket', `no bucket named ${name}`);
    return b;
  };
  const keyOr404 = (id: string): AccessKeyRecord => {
    const k = store.accessKey(id);
    if (!k) throw new AdminError(404, 'NoSuchAccessKey', `no access key ${id}`);
    return k;
  };

  const createBucket = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await objectBody(req, ['name', 'owner', 'versioning', 'objectLock', 'policy']);
    const { name, owner, versioning, objectLock, policy } = body;
    if (typeof name !== 'string') throw invalid('name must be a string');
    try {
      validateBucketName(name, true);
    } catch {
      throw invalid(`invalid bucket name ${JSON.stringify(name.slice(0, 80))}: 3-63 characters a-z 0-9 . -, starting and ending with a letter or digit`);
    }
    if (owner !== undefined && typeof owner !== 'string') throw invalid('owner must be an access key id');
    if (versioning !== undefined && !VERSIONING.includes(versioning as string)) throw invalid('versioning must be Enabled, Suspended or Unversioned');
    if (objectLock !== undefined && typeof objectLock !== 'boolean') throw invalid('objectLock must be true or false');
    if (policy !== undefined && typeof policy !== 'string') throw invalid('policy must be the name of a layout policy');
    await available();
    if (owner !== undefined && !store.accessKey(owner)) throw unprocessable('UnknownAccessKey', `owner ${owner} is not an access key of this grid`);
    if (objectLock === true && versioning !== undefined && versioning !== 'Enabled') {
      throw unprocessable('InvalidBucketState', 'object lock needs versioning Enabled (or leave versioning out)');
    }
    if (policy !== undefined) {
      const layout = deps.layout?.();
      if (!deps.layout) throw unprocessable('UnknownPolicy', 'this node is not part of a grid: a bucket cannot be bound to a replication policy');
      const names = layout?.policies.map((p) => p.name) ?? [];
      if (!names.includes(policy)) throw unprocessable('UnknownPolicy', `policy ${policy} is not in the layout (policies: ${names.join(', ') || 'none'})`);
    }
    if (store.meta.getBucket(name)) throw new AdminError(409, 'BucketAlreadyExists', `bucket ${name} already exists`);
    const b = await viaStore(() => store.createBucket(name, owner ?? ADMIN_OWNER, deps.region, objectLock === true, {
      versioning: versioning as VersioningState | undefined, policy,
    }));
    sendJson(res, 201, bucketInfo(b));
  };

  const deleteBucket = async (name: string, res: ServerResponse): Promise<void> => {
    await available();
    // In a grid, the bucket's listing is brought current from its replicas first: "empty" is checked at a quorum.
    if (store.meta.getBucket(name)) await viaStore(() => store.prepare('DeleteBucket', name));
    bucketOr404(name);
    await viaStore(() => store.deleteBucket(name));
    res.writeHead(204, { 'cache-control': 'no-store' }).end();
  };

  const createKey = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await objectBody(req, ['name', 'grants']);
    const { name } = body;
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_KEY_NAME_CHARS || /[\x00-\x1f\x7f]/.test(name)) {
      throw invalid(`name must be 1-${MAX_KEY_NAME_CHARS} printable characters`);
    }
    const grants = checkGrants(body.grants ?? []);
    await available();
    const k: AccessKeyRecord = { accessKeyId: newAccessKeyId(), secretAccessKey: newSecretAccessKey(), name, createdMs: Date.now(), grants };
    if (!(await viaStore(() => store.createAccessKey(k)))) throw new Error('a freshly generated access key id is already taken');
    sendJson(res, 201, { ...accessKeyInfo(k), secretAccessKey: k.secretAccessKey } satisfies CreateAccessKeyResponse);
  };

  const setGrants = async (id: string, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await objectBody(req, ['grants']);
    if (body.grants === undefined) throw invalid('grants is required (an empty list removes every grant)');
    const grants = checkGrants(body.grants);
    await available();
    keyOr404(id);
    if (!(await viaStore(() => store.setAccessKeyGrants(id, grants)))) keyOr404(id);
    sendJson(res, 200, accessKeyInfo(keyOr404(id)));
  };

  const revokeKey = async (id: string, res: ServerResponse): Promise<void> => {
    await available();
    keyOr404(id);
    if (!(await viaStore(() => store.revokeAccessKey(id)))) keyOr404(id);
    res.writeHead(204, { 'cache-control': 'no-store' }).end();
  };

  return [
    { method: 'POST', path: '/v1/buckets', auth: true, handler: createBucket },
    {
      method: 'GET', path: '/v1/buckets', auth: true,
      handler: async (_req, res) => sendJson(res, 200, { buckets: store.listAllBuckets().map(bucketInfo) } satisfies ListBucketsResponse),
    },
    { method: 'GET', path: BUCKET_PATH, auth: true, handler: async (_req, res, m) => sendJson(res, 200, bucketInfo(bucketOr404(m![1]))) },
    { method: 'DELETE', path: BUCKET_PATH, auth: true, handler: async (_req, res, m) => deleteBucket(m![1], res) },
    { method: 'POST', path: '/v1/keys', auth: true, handler: createKey },
    {
      method: 'GET', path: '/v1/keys', auth: true,
      handler: async (_req, res) => sendJson(res, 200, { keys: store.listAccessKeys().map(accessKeyInfo) } satisfies ListAccessKeysResponse),
    },
    { method: 'GET', path: KEY_PATH, auth: true, handler: async (_req, res, m) => sendJson(res, 200, accessKeyInfo(keyOr404(m![1]))) },
    { method: 'DELETE', path: KEY_PATH, auth: true, handler: async (_req, res, m) => revokeKey(m![1], res) },
    { method: 'PUT', path: GRANTS_PATH, auth: true, handler: async (req, res, m) => setGrants(m![1], req, res) },
  ];
}
