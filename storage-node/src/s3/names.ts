import { S3Error } from './error';

export const MAX_KEY_BYTES = 1024;

/** AWS's rules for general-purpose bucket names. `strict` is for creation; other operations only need a name that could exist. */
export function validateBucketName(name: string, strict: boolean): void {
  const ok =
    name.length >= 3 && name.length <= 63 &&
    /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name) &&
    !name.includes('..') && !name.includes('.-') && !name.includes('-.') &&
    !/^\d+\.\d+\.\d+\.\d+$/.test(name) &&
    !name.startsWith('xn--') && !name.startsWith('sthree-') &&
    !name.endsWith('-s3alias') && !name.endsWith('--ol-s3');
  if (ok) return;
  if (strict) throw new S3Error('InvalidBucketName', undefined, { BucketName: name });
  throw new S3Error('NoSuchBucket', undefined, { BucketName: name });
}

/** Keys are opaque UTF-8 strings; they never become file paths. NUL and over-long keys are refused. */
export function validateKey(key: string): void {
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new S3Error('KeyTooLongError', undefined, { MaxSizeAllowed: String(MAX_KEY_BYTES), Size: String(Buffer.byteLength(key)) });
  if (key.includes('\u0000')) throw new S3Error('InvalidArgument', 'Object keys cannot contain a NUL character.', { ArgumentName: 'key' });
  if (/[\uD800-\uDFFF]/.test(key.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))) throw new S3Error('InvalidURI', 'The key is not valid UTF-8.');
}
