import { spawn } from 'node:child_process';
import fs from 'node:fs';

/** Runs external programs (third-party S3 clients) with a deadline and bounded output capture. */

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const OUTPUT_LIMIT_BYTES = 256 * 1024;

function capped(): { push(c: Buffer): void; text(): string } {
  const parts: Buffer[] = [];
  let bytes = 0;
  return {
    push(c: Buffer) {
      if (bytes >= OUTPUT_LIMIT_BYTES) return;
      parts.push(c.subarray(0, OUTPUT_LIMIT_BYTES - bytes));
      bytes += c.length;
    },
    text: () => Buffer.concat(parts).toString('utf8') + (bytes > OUTPUT_LIMIT_BYTES ? '\n[output truncated]' : ''),
  };
}

export function runCommand(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = capped();
    const err = capped();
    let timedOut = false;
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout: out.text(), stderr: `${err.text()}\n[spawn error] ${e.message}`, timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out.text(), stderr: err.text(), timedOut });
    });
  });
}

/** Runs a command that must succeed; on failure the error holds the command line, exit status, stderr and stdout. */
export async function mustRun(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<string> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0 || r.timedOut) {
    const status = r.timedOut ? `timed out after ${opts.timeoutMs} ms` : `exit code ${r.code}, signal ${r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${status}\n--- stderr ---\n${r.stderr.slice(-8000)}\n--- stdout ---\n${r.stdout.slice(-4000)}`);
  }
  return r.stdout;
}

/** An environment for a child that talks to loopback only: no proxies, no ambient AWS settings. */
export function isolatedEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AWS_|RCLONE_|S3CMD)/i.test(k) || /_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  fs.mkdirSync(home, { recursive: true });
  return { ...env, HOME: home, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost', ...extra };
}
