import { promises as fsp } from 'node:fs';
import { ChainedRecord, MAX_LINE_BYTES, checkHash, parseLine } from './record';

/**
 * Enough to hold the last complete line and a torn one after it: a crash tears at most one line, since
 * the writer only ever appends whole lines.
 */
const TAIL_READ_BYTES = 2 * MAX_LINE_BYTES;

export interface SegmentTail {
  sizeBytes: number;
  /** Bytes after the last newline: a line whose write was cut short. */
  tornBytes: number;
  /** The last complete record, if the segment holds one. */
  last?: ChainedRecord;
  /** Whether `last` matches its own hash (a mismatch is reported by verify, not fixed here). */
  lastHashOk: boolean;
}

/** Reads the end of one segment. Throws when the end is not a record this writer could have produced. */
export async function readTail(file: string): Promise<SegmentTail> {
  const fh = await fsp.open(file, 'r');
  try {
    const sizeBytes = (await fh.stat()).size;
    if (sizeBytes === 0) return { sizeBytes, tornBytes: 0, lastHashOk: true };
    const start = Math.max(0, sizeBytes - TAIL_READ_BYTES);
    const buf = Buffer.alloc(sizeBytes - start);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, start + got);
      if (bytesRead === 0) throw new Error(`audit segment ${file} shrank while being read`);
      got += bytesRead;
    }
    const lastNl = buf.lastIndexOf(0x0a);
    if (lastNl < 0) {
      if (start > 0) throw new Error(`audit segment ${file}: no line end in its last ${TAIL_READ_BYTES} bytes; run 'archipel audit verify'`);
      return { sizeBytes, tornBytes: sizeBytes, lastHashOk: true };
    }
    const tornBytes = buf.length - lastNl - 1;
    const prevNl = lastNl === 0 ? -1 : buf.lastIndexOf(0x0a, lastNl - 1);
    if (prevNl < 0 && start > 0) throw new Error(`audit segment ${file}: last line longer than ${TAIL_READ_BYTES} bytes; run 'archipel audit verify'`);
    const text = buf.subarray(prevNl + 1, lastNl).toString('utf8');
    const parsed = parseLine(text);
    // Without a readable last record the chain cannot be resumed; starting a new one would hide the damage.
    if (!parsed.ok) throw new Error(`audit segment ${file}: last record unreadable (${parsed.reason}); run 'archipel audit verify'`);
    return { sizeBytes, tornBytes, last: parsed.rec, lastHashOk: checkHash(parsed.rec, text).ok };
  } finally {
    await fh.close();
  }
}
