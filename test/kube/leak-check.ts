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
