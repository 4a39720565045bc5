// Checks that tests leave nothing behind: processes and listening TCP sockets.
import * as fs from 'node:fs';
import { groupAlive } from './processes';

export interface ListeningSocket {
  ip: string;
  port: number;
}

/** IPv4 sockets in LISTEN state, from /proc/net/tcp (Linux). */
export function listeningSockets(): ListeningSocket[] {
  const text = fs.readFileSync('/proc/net/tcp', 'utf8');
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4 || cols[3] !== '0A') continue; // 0A = TCP_LISTEN
    const [hexIp, hexPort] = cols[1].split(':');
    // The address is the in-memory u32, i.e. little-endian bytes on x86 and arm64.
    const bytes = [0, 2, 4, 6].map((i) => parseInt(hexIp.slice(i, i + 2), 16)).reverse();
    out.push({ ip: bytes.join('.'), port: parseInt(hexPort, 16) });
  }
  return out;
}

/** Process group ids among `pgids` that still have a live member. */
export function aliveGroups(pgids: number[]): number[] {
  return pgids.filter((pgid) => pgid > 0 && groupAlive(pgid));
}

/** "pgid: cmdline of each member" for an assertion message, read from /proc (Linux). */
export function describeGroup(pgid: number): string {
  const members: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the ")" that ends the command name: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid) continue;
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      members.push(`${entry}[${fields[0]}] ${cmd.slice(0, 120)}`);
    } catch {
      // exited meanwhile
    }
  }
  return `${pgid}: ${members.join('; ') || 'no member found'}`;
}
