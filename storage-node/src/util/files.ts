import fs from 'node:fs';
import path from 'node:path';

/** Write a small file so that readers see the old or the new content, never a part (tmp, fsync, rename, dir fsync). */
export function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dfd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

/**
 * State and start time (clock ticks since boot) of a process, from /proc (Linux); undefined when there
 * is no such process or /proc cannot tell.
 */
function procStat(pid: number): { state: string; startTicks: string } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that ends the command name: state is the 3rd field, starttime the 22nd.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], startTicks: fields[19] };
  } catch {
    return undefined;
  }
}

/**
 * True if the process that wrote a lock still runs: the pid exists, is not a zombie (a SIGKILLed node
 * its parent has not reaped yet), and, when the lock recorded it, started at the same time (a pid the
 * system gave to another process since does not hold the lock).
 */
function holderAlive(pid: number, startTicks: string | undefined): boolean {
  const st = procStat(pid);
  if (st === undefined) {
    try {
      process.kill(pid, 0);
      return true; // no /proc: trust the pid
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  if (st.state === 'Z' || st.state === 'X') return false;
  return startTicks === undefined || startTicks === st.startTicks;
}

/**
 * One process per data directory: two nodes writing the same volume would corrupt it. A lock left by a
 * killed process (its pid is gone, a zombie, or reused by another process) is taken over. Returns the
 * release function.
 */
export function acquireDataDirLock(dataDir: string): () => void {
  const lock = path.join(dataDir, 'node.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lock, 'wx', 0o600);
      const me = procStat(process.pid);
      fs.writeSync(fd, me ? `${process.pid} ${me.startTicks}` : String(process.pid));
      fs.closeSync(fd);
      return () => fs.rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const [pidText, startTicks] = fs.readFileSync(lock, 'utf8').trim().split(/\s+/);
      const pid = Number(pidText);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && holderAlive(pid, startTicks)) {
        throw new Error(`data directory ${dataDir} is in use by process ${pid}`);
      }
      fs.rmSync(lock, { force: true });
    }
  }
  throw new Error(`cannot lock data directory ${dataDir}`);
}
