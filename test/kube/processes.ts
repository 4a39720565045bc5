// Child processes of the test cluster: each in its own process group, all killed on exit.
//
// Every process the harness or the node agent starts goes through spawnGroup() so that one
// registry knows them all: a test that fails half-way, a mocha bail or a Ctrl-C still kills
// every group (SIGKILL in the 'exit' handler, which can only run synchronous code).
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';

const liveGroups = new Set<number>();
const tempDirs = new Set<string>();
const everStarted = new Set<number>();
let exitHandlerInstalled = false;

function killAllNow(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveGroups.clear();
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // Without a listener Node exits without running 'exit' handlers; with one, we must exit ourselves.
    process.once(signal, () => {
      killAllNow();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

export interface SpawnOptions {
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended to this file. */
  logPath: string;
}

export interface GroupProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or 128+signal number style: null code → -1) once the leader exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** Signals the whole group; no-op once the group is gone. */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, wait up to graceMs, then SIGKILL; resolves when the leader has exited. */
  stop(graceMs: number): Promise<void>;
}

/** Starts `executable` as the leader of a new process group, registered for cleanup. */
export function spawnGroup(executable: string, options: SpawnOptions): GroupProcess {
  installExitHandler();
  const logFd = fs.openSync(options.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(executable, options.args, {
      cwd: options.cwd,
      env: options.env,
      detached: true, // own process group: kill(-pid) reaches grandchildren too
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    fs.closeSync(logFd);
  }
  const pid = child.pid;
  let running = pid !== undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (err) => {
      fs.appendFileSync(options.logPath, `spawn error: ${err.message}\n`);
      running = false;
      if (pid !== undefined) liveGroups.delete(pid);
      resolve({ code: -1, signal: null });
    });
    child.once('exit', (code, signal) => {
      running = false;
      if (pid !== undefined) {
        // The leader is gone; SIGKILL stragglers of its group before forgetting it.
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // no member left
        }
        liveGroups.delete(pid);
      }
      resolve({ code, signal });
    });
  });
  if (pid !== undefined) {
    liveGroups.add(pid);
    everStarted.add(pid);
  }
  const signalGroup = (sig: NodeJS.Signals): void => {
    if (pid === undefined || !liveGroups.has(pid)) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // raced with exit
    }
  };
  return {
    pid: pid ?? -1,
    child,
    exited,
    isRunning: () => running,
    signal: signalGroup,
    async stop(graceMs: number): Promise<void> {
      if (running) {
        signalGroup('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), Math.max(0, graceMs));
        });
        const outcome = await Promise.race([exited.then(() => 'exited' as const), timedOut]);
        if (timer) clearTimeout(timer);
        if (outcome === 'timeout') signalGroup('SIGKILL');
        await exited;
      }
      // The leader's exit handler SIGKILLed its stragglers; a killed process lingers until its
      // parent (or init) reaps it, so wait, bounded, until no member of the group is left.
      if (pid !== undefined) await waitGroupGone(pid, 5_000);
    },
  };
}

/** Removes `dir` when this Node process exits, unless unregistered before (kept for debugging). */
export function removeOnExit(dir: string): () => void {
  installExitHandler();
  tempDirs.add(dir);
  return () => tempDirs.delete(dir);
}

/** Pids of every process group leader started in this Node process (for leak assertions). */
export function startedPids(): number[] {
  return [...everStarted];
}

/** Process group leaders still registered as alive. */
export function liveGroupCount(): number {
  return liveGroups.size;
}

/** Waits until no member of group `pgid` exists, or `deadlineMs` passed (then gives up silently). */
export async function waitGroupGone(pgid: number, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  while (groupAlive(pgid)) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** True if any process (leader or child) of the group `pgid` still exists. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
