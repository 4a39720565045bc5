/**
 * The node processes of the local runtime: started detached (own process group, output to a log
 * file, not tied to the CLI), found again by pid, and signalled only after checking that the pid
 * still runs `archipel node --config <that node's config>`; a pid the system has since given to
 * another program is never signalled.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

const HAS_PROC = fs.existsSync('/proc/self/cmdline');
const POLL_MS = 50;

/** True when `pid` is a live (not zombie) process whose command line names `configPath`. */
export function isNodeProcess(pid: number | null | undefined, configPath: string): pid is number {
  if (!pid || !Number.isInteger(pid) || pid <= 0) return false;
  if (!HAS_PROC) {
    try {
      process.kill(pid, 0);
      return true; // without /proc the command line cannot be checked
    } catch {
      return false;
    }
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false; // exited, not yet reaped
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(configPath);
  } catch {
    return false; // no such process
  }
}

/** Starts `node <cli> node --config <configPath>` in its own process group, output appended to `logPath`. */
export function spawnNode(cliPath: string, configPath: string, logPath: string): { pid: number; exited: () => boolean } {
  const fd = fs.openSync(logPath, 'a', 0o600);
  try {
    fs.writeSync(fd, `\n--- archipel local: starting at ${new Date().toISOString()} ---\n`);
    const child = spawn(process.execPath, [cliPath, 'node', '--config', configPath], {
      detached: true, // own process group: Ctrl-C in the shell that ran `up` does not reach the nodes
      stdio: ['ignore', fd, fd],
    });
    let exited = false;
    child.on('exit', () => { exited = true; });
    child.on('error', () => { exited = true; });
    child.unref();
    if (!child.pid) throw new Error(`could not start ${process.execPath} ${cliPath}`);
    return { pid: child.pid, exited: () => exited };
  } finally {
    fs.closeSync(fd); // the child holds its own copy
  }
}

/** Signals a node process if (and only if) it is still that node. Returns whether it was signalled. */
export function signalNode(pid: number | null, configPath: string, signal: NodeJS.Signals): boolean {
  if (!isNodeProcess(pid, configPath)) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Waits until the process is gone (or a zombie); false if it is still there at the deadline. */
export async function waitGone(pid: number, configPath: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isNodeProcess(pid, configPath)) {
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/**
 * SIGTERM (the node drains in-flight requests), then SIGKILL after `graceMs`; with `graceMs` 0,
 * SIGKILL at once. Resolves once the process is gone.
 */
export async function stopNode(pid: number | null, configPath: string, graceMs: number, killMs: number): Promise<'stopped' | 'killed' | 'not running'> {
  if (graceMs > 0) {
    if (!signalNode(pid, configPath, 'SIGTERM')) return 'not running';
    if (await waitGone(pid as number, configPath, graceMs)) return 'stopped';
  }
  if (!signalNode(pid, configPath, 'SIGKILL')) return graceMs > 0 ? 'stopped' : 'not running';
  if (await waitGone(pid as number, configPath, killMs)) return 'killed';
  throw new Error(`process ${pid} survived SIGKILL for ${killMs} ms`);
}

/** Why a node could not listen on host:port (undefined when it can): checked before anything starts. */
export function portProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') resolve(`port ${port} on ${host} is taken (another program listens there)`);
      else if (e.code === 'EACCES') resolve(`port ${port} on ${host} needs privileges`);
      else if (e.code === 'EADDRNOTAVAIL') resolve(`${host} is not a local address here (Linux routes all of 127.0.0.0/8 to loopback; other systems need an alias)`);
      else resolve(`cannot listen on ${host}:${port}: ${e.message}`);
    });
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** The last `lines` lines of a file, for error messages (reads at most the last 64 KiB). */
export function tail(file: string, lines = 20): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8').split('\n').slice(-lines - 1).join('\n').trimEnd();
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '(no log)';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
