import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, DeleteObjectCommand,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import type { BenchClient } from './signed-client';

/**
 * The benchmark through @aws-sdk/client-s3 with its default settings (aws-chunked uploads with a
 * CRC32 trailer, response checksum validation): the figures an application gets. Retries are off
 * (maxAttempts 1) so that every failed request is counted as an error instead of hidden.
 */
export class SdkS3Client implements BenchClient {
  readonly name = '@aws-sdk/client-s3 (defaults, maxAttempts 1)';
  private readonly s3: S3Client;

  constructor(o: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string }) {
    this.s3 = new S3Client({
      endpoint: o.endpoint,
      region: o.region,
      forcePathStyle: true,
      credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
      maxAttempts: 1,
    });
  }

  async createBucket(bucket: string): Promise<void> {
    try {
      await this.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (e) {
      if ((e as Error).name !== 'BucketAlreadyOwnedByYou') throw e;
    }
  }

  async put(bucket: string, key: string, body: Buffer): Promise<void> {
    await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  async get(bucket: string, key: string): Promise<number> {
    const r = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    let bytes = 0;
    for await (const c of r.Body as Readable) bytes += (c as Buffer).length;
    return bytes;
  }

  async list(bucket: string, prefix: string, maxKeys: number): Promise<number> {
    const r = await this.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: maxKeys }));
    return r.KeyCount ?? 0;
  }

  async del(bucket: string, key: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  async close(): Promise<void> {
    this.s3.destroy();
  }
}
