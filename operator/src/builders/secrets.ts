/**
 * Secrets: the grid's (internal RPC secret, admin token) and each Bucket's credentials. The values
 * are inputs: generating them once and keeping them is the caller's job, so building stays pure
 * and the same input gives the same Secret. Values go in `data` (base64), not `stringData`, which
 * the API server never returns and server-side apply cannot compare.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { Bucket, Grid } from '../api/types';
import {
  BuildError, bucketSecretName, checkSameGrid, checkSubdomainName, commonLabels, gridS3ServiceName, gridSecretName, LABELS,
  namespaceOf, objectMeta, serviceHost, type BuildOptions,
} from './common';
import { SECRET_KEYS } from './node-config';

/** The storage node refuses a shorter grid secret (storage-node/src/config.ts). */
export const MIN_GRID_SECRET_BYTES = 32;
export const MIN_ADMIN_TOKEN_BYTES = 16;

/** Printable ASCII without spaces: the node trims secret files, and tokens travel in headers. */
const TOKEN = /^[\x21-\x7e]+$/;
const ACCESS_KEY_ID = /^[A-Za-z0-9_-]{3,128}$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export interface GridSecretValues {
  /** Signs node-to-node RPC; at least 32 bytes. */
  gridSecret: string;
  /** Bearer token of the nodes' admin API. */
  adminToken: string;
}

export interface BucketCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

function checkToken(value: string, min: number, what: string, where: string): void {
  // Messages name the field, never the value.
  if (typeof value !== 'string' || Buffer.byteLength(value) < min) throw new BuildError(`${where}: ${what} must be at least ${min} bytes`);
  if (!TOKEN.test(value)) throw new BuildError(`${where}: ${what} must be printable ASCII without spaces`);
}

/** The grid Secret, `spec.admin.secretName` (default `<grid>-admin`), owned by the Grid. */
export function buildGridSecret(grid: Grid, values: GridSecretValues): V1Secret {
  const where = `Grid ${grid.metadata.name}`;
  checkToken(values.gridSecret, MIN_GRID_SECRET_BYTES, 'the grid secret', where);
  checkToken(values.adminToken, MIN_ADMIN_TOKEN_BYTES, 'the admin token', where);
  const name = checkSubdomainName(gridSecretName(grid), 'Secret', where);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: objectMeta(name, grid, { ...commonLabels(grid), [LABELS.component]: 'grid-secret' }),
    type: 'Opaque',
    data: { [SECRET_KEYS.adminToken]: b64(values.adminToken), [SECRET_KEYS.gridSecret]: b64(values.gridSecret) },
  };
}

/** Where clients of a grid reach S3: the grid-wide S3 Service. */
export function gridS3Endpoint(grid: Grid, options: BuildOptions = {}): { host: string; port: number; url: string } {
  const host = serviceHost(gridS3ServiceName(grid), namespaceOf(grid), options);
  const port = grid.spec.s3.port;
  return { host, port, url: `${grid.spec.s3.tls ? 'https' : 'http'}://${host}:${port}` };
}

/**
 * The Secret an application mounts or reads as environment: `spec.secretName` (default
 * `<bucketName>-s3`), owned by the Bucket, in its namespace. The keys are the AWS SDKs' own
 * variables plus BUCKET_NAME, BUCKET_HOST and BUCKET_PORT.
 */
export function buildBucketSecret(bucket: Bucket, grid: Grid, credentials: BucketCredentials, options: BuildOptions = {}): V1Secret {
  const where = `Bucket ${bucket.metadata.name}`;
  checkSameGrid(bucket, grid);
  if (typeof credentials.accessKeyId !== 'string' || !ACCESS_KEY_ID.test(credentials.accessKeyId)) {
    throw new BuildError(`${where}: the access key id must be 3-128 letters, digits, _ or -`);
  }
  checkToken(credentials.secretAccessKey, 8, 'the secret access key', where);
  const name = checkSubdomainName(bucketSecretName(bucket), 'Secret', where);
  const endpoint = gridS3Endpoint(grid, options);
  const labels: Record<string, string> = { ...commonLabels(grid), [LABELS.component]: 'bucket-credentials' };
  // A label value is at most 63 characters; a longer Bucket name is still found by owner reference.
  if (bucket.metadata.name.length <= 63 && LABEL_VALUE.test(bucket.metadata.name)) labels[LABELS.bucket] = bucket.metadata.name;
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: objectMeta(name, bucket, labels),
    type: 'Opaque',
    data: {
      AWS_ACCESS_KEY_ID: b64(credentials.accessKeyId),
      AWS_SECRET_ACCESS_KEY: b64(credentials.secretAccessKey),
      AWS_ENDPOINT_URL: b64(endpoint.url),
      AWS_REGION: b64(grid.spec.s3.region),
      BUCKET_NAME: b64(bucket.spec.bucketName),
      BUCKET_HOST: b64(endpoint.host),
      BUCKET_PORT: b64(String(endpoint.port)),
    },
  };
}
