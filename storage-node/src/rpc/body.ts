import { Readable } from 'node:stream';

/**
 * Reads a whole body up to `maxBytes` (events rather than an async iterator: this is the hot path).
 * Past the bound it stops reading and rejects; the caller decides whether to destroy the stream
 * (client) or to answer first and close the connection (server, so the 413 still reaches the peer).
 */
export function collect(body: Readable, maxBytes: number, tooLarge: () => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    body.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) {
        body.removeAllListeners('data');
        body.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    let ended = false;
    body.once('end', () => {
      ended = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total));
    });
    body.once('error', reject);
    // Only build the error when it is needed: an Error's stack trace is costly on this hot path.
    body.once('close', () => {
      if (!ended) reject(new Error('body closed before its end'));
    });
  });
}
