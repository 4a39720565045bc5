import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { GENESIS_HASH, checkHash, parseLine, segmentIndexes, segmentName } from './record';

export interface VerifyProblem {
  /** Segment file name, e.g. 'audit-000003.jsonl'. */
  file: string;
  /** 1-based line within that file. */
  line: number;
  kind: 'altered' | 'removed-or-inserted' | 'malformed' | 'truncated';
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  records: number;
  files: number;
  /** Hash of the last readable record. Compare with a head hash noted earlier to detect a cut-off end. */
  headHash?: string;
  problems: VerifyProblem[];
  /** Problems found beyond the listed ones (the list is bounded). */
  problemsOmitted: number;
}

const MAX_PROBLEMS = 1000;
const READ_CHUNK_BYTES = 256 * 1024;
/** Far above any line the writer produces (record.ts MAX_LINE_BYTES); beyond it a line is malformed. */
const MAX_VERIFY_LINE_BYTES = 1024 * 1024;

interface Line {
  no: number;
  text: string;
  /** false for bytes after the last newline of the file. */
  complete: boolean;
  tooLong: boolean;
}

/** The lines of a file, read in chunks so that memory stays bounded whatever the file size. */
async function* readLines(file: string): AsyncGenerator<Line> {
  const fh = await fsp.open(file, 'r');
  try {
    const chunk = Buffer.alloc(READ_CHUNK_BYTES);
    let parts: Buffer[] = [];
    let partBytes = 0;
    let tooLong = false;
    let no = 0;
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      let from = 0;
      while (from < bytesRead) {
        const nl = chunk.indexOf(0x0a, from);
        const end = nl < 0 || nl >= bytesRead ? bytesRead : nl;
        if (!tooLong) {
          parts.push(Buffer.from(chunk.subarray(from, end)));
          partBytes += end - from;
          if (partBytes > MAX_VERIFY_LINE_BYTES) {
            tooLong = true;
            parts = [];
          }
        }
        if (end === bytesRead) break;
        no++;
        yield { no, text: tooLong ? '' : Buffer.concat(parts).toString('utf8'), complete: true, tooLong };
        parts = [];
        partBytes = 0;
        tooLong = false;
        from = end + 1;
      }
    }
    if (partBytes > 0 || tooLong) yield { no: no + 1, text: Buffer.concat(parts).toString('utf8'), complete: false, tooLong };
  } finally {
    await fh.close();
  }
}

class Checker {
  readonly problems: VerifyProblem[] = [];
  omitted = 0;
  records = 0;
  headHash: string | undefined;
  private expectedSeq = 1;
  private expectedPrev: string = GENESIS_HASH;
  /** false after a malformed line or a missing segment: the next link cannot be checked. */
  private linkKnown = true;

  report(p: VerifyProblem): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push(p);
    else this.omitted++;
  }

  missingSegments(file: string, from: number, to: number): void {
    const names = from === to ? segmentName(from) : `${segmentName(from)} to ${segmentName(to)}`;
    this.report({ file, line: 1, kind: 'removed-or-inserted', message: `segment file(s) ${names} missing before this file` });
    this.linkKnown = false;
  }

  line(file: string, isLastFile: boolean, l: Line): void {
    if (!l.complete) {
      const why = isLastFile ? 'the node stopped mid-write and has not reopened the log since' : 'a later segment exists, so this file was cut';
      this.report({ file, line: l.no, kind: 'truncated', message: `partial record without line end (${Buffer.byteLength(l.text)} bytes): ${why}` });
      this.linkKnown = false;
      return;
    }
    if (l.tooLong) return this.malformed(file, l.no, `line longer than ${MAX_VERIFY_LINE_BYTES} bytes`);
    const parsed = parseLine(l.text);
    if (!parsed.ok) return this.malformed(file, l.no, parsed.reason);
    const rec = parsed.rec;
    const linked = !this.linkKnown || (rec.prev === this.expectedPrev && rec.seq === this.expectedSeq);
    const own = checkHash(rec, l.text);
    if (!own.ok) {
      const link = linked ? '' : `; it also does not follow record ${this.expectedSeq - 1}`;
      this.report({ file, line: l.no, kind: 'altered', message: `record seq ${rec.seq} was altered: ${own.reason}${link}` });
    } else if (!linked) {
      const what = rec.seq > this.expectedSeq ? `${rec.seq - this.expectedSeq} record(s) removed` : rec.seq < this.expectedSeq ? 'a record inserted or repeated' : 'the previous record was replaced';
      this.report({ file, line: l.no, kind: 'removed-or-inserted', message: `record seq ${rec.seq} does not follow seq ${this.expectedSeq - 1} (expected seq ${this.expectedSeq} chained to ${this.expectedPrev.slice(0, 12)}…): ${what}` });
    }
    this.records++;
    // A repeated or inserted older record is skipped over: the records after it still link to the one before.
    if (own.ok && !linked && rec.seq < this.expectedSeq) return;
    // Otherwise resynchronise on this record so that one change is reported once, not at every later line.
    this.expectedSeq = rec.seq + 1;
    this.expectedPrev = rec.hash;
    this.linkKnown = true;
    this.headHash = rec.hash;
  }

  private malformed(file: string, line: number, reason: string): void {
    this.report({ file, line, kind: 'malformed', message: `not a valid audit record: ${reason}` });
    this.linkKnown = false;
  }
}

/**
 * Checks every segment in `dir`: each record's own hash, each link to the previous record, seq without
 * gaps, segment numbers without gaps. Throws when the directory or a segment cannot be read.
 */
export async function verifyAuditDir(dir: string): Promise<VerifyResult> {
  const indexes = segmentIndexes(await fsp.readdir(dir));
  const c = new Checker();
  let prevIndex = 0;
  for (let i = 0; i < indexes.length; i++) {
    const file = segmentName(indexes[i]);
    if (indexes[i] !== prevIndex + 1) c.missingSegments(file, prevIndex + 1, indexes[i] - 1);
    prevIndex = indexes[i];
    for await (const l of readLines(path.join(dir, file))) c.line(file, i === indexes.length - 1, l);
  }
  const ok = c.problems.length === 0 && c.omitted === 0;
  return { ok, records: c.records, files: indexes.length, headHash: c.headHash, problems: c.problems, problemsOmitted: c.omitted };
}

/** `archipel audit verify`: prints what is wrong and where. Exit code 0 intact, 1 tampered, 2 unreadable. */
export async function runAuditVerify(dir: string, out: NodeJS.WritableStream): Promise<number> {
  let r: VerifyResult;
  try {
    r = await verifyAuditDir(dir);
  } catch (e) {
    out.write(`audit log unreadable: ${(e as Error).message}\n`);
    return 2;
  }
  if (r.files === 0) {
    out.write(`audit log unreadable: no audit segments (audit-NNNNNN.jsonl) in ${dir}\n`);
    return 2;
  }
  const head = r.headHash ?? GENESIS_HASH;
  if (r.ok) {
    out.write(`audit log OK: ${r.records} records in ${r.files} file(s) verified, chain intact\nhead hash ${head}\n`);
    return 0;
  }
  for (const p of r.problems) out.write(`${p.file} line ${p.line}: ${p.kind}: ${p.message}\n`);
  if (r.problemsOmitted > 0) out.write(`… and ${r.problemsOmitted} more problem(s) not listed\n`);
  const total = r.problems.length + r.problemsOmitted;
  out.write(`audit log NOT intact: ${total} problem(s) in ${r.records} records across ${r.files} file(s)\nhead hash ${head}\n`);
  return 1;
}
