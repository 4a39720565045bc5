/**
 * `archipel local status`: one row per node (site, address, process, readiness, layout version,
 * capacity used, owed copies, part in a layout transition), a progress bar per site while data
 * moves, then the grid: do the running nodes agree on the layout, which sites are down, which
 * policies are degraded. Asks every running node in parallel, each bounded.
 */
import { formatBytes, table } from './format';
import type { NodeStatus } from './admin-client';
import { rebalanceCell, siteProgressLine } from './rebalance';
import { clientOf, livePid, type Runtime } from './runtime';
import type { LocalNode } from './state';

interface Row {
  n: LocalNode;
  pid?: number;
  ready: boolean;
  st?: NodeStatus;
  error?: string;
}

async function probe(rt: Runtime, n: LocalNode): Promise<Row> {
  const pid = livePid(rt, n);
  if (pid === undefined) return { n, ready: false };
  const c = clientOf(rt, n);
  const [ready, st] = await Promise.all([c.ready(), c.status().catch((e: Error) => e)]);
  return st instanceof Error ? { n, pid, ready, error: st.message } : { n, pid, ready, st };
}

function owed(st: NodeStatus | undefined): string {
  const r = st?.repair;
  if (r?.owedItems === undefined) return '-';
  return r.owedBytes === undefined ? String(r.owedItems) : `${r.owedItems} (${formatBytes(r.owedBytes)})`;
}

export async function statusReport(rt: Runtime): Promise<string> {
  const { state } = rt;
  const siteOrder = new Map(state.sites.map((s) => [s.name, s.index]));
  const nodes = [...state.nodes].sort((a, b) => (siteOrder.get(a.site) ?? 0) - (siteOrder.get(b.site) ?? 0) || a.slot - b.slot);
  const rows = await Promise.all(nodes.map((n) => probe(rt, n)));
  const role = (site: string): string => state.sites.find((s) => s.name === site)?.role ?? '?';
  const out: string[] = [`Grid ${state.grid} (file ${state.file}, data ${rt.data})`, ''];
  out.push(table([
    ['SITE', 'ROLE', 'NODE', 'S3 ADDRESS', 'PROCESS', 'READY', 'LAYOUT', 'USED', 'OWED', 'REBALANCE'],
    ...rows.map((r) => [
      r.n.site, role(r.n.site), r.n.id, `${r.n.host}:${r.n.s3Port || '-'}`,
      r.pid === undefined ? 'down' : `up (pid ${r.pid})`,
      r.pid === undefined ? '-' : r.ready ? 'yes' : 'no',
      r.st?.grid ? String(r.st.grid.layoutVersion) : '-',
      formatBytes(r.st?.storage?.usedBytes),
      owed(r.st),
      rebalanceCell(r.st?.rebalance),
    ]),
  ]));
  const draining = new Set((state.layout?.nodes ?? []).filter((n) => n.state === 'draining').map((n) => n.id));
  for (const s of [...state.sites].sort((a, b) => a.index - b.index)) {
    const nodes = rows.filter((r) => r.n.site === s.name).map((r) => ({ id: r.n.id, draining: draining.has(r.n.id), rebalance: r.st?.rebalance }));
    const line = siteProgressLine(s.name, nodes);
    if (line) out.push(line);
  }
  out.push('');
  const up = rows.filter((r) => r.pid !== undefined);
  const versions = new Map<number, string[]>();
  for (const r of up) if (r.st?.grid) versions.set(r.st.grid.layoutVersion, [...(versions.get(r.st.grid.layoutVersion) ?? []), r.n.id]);
  const expected = state.layout?.version;
  if (up.length === 0) out.push('Layout: no node is running');
  else if (versions.size === 1 && [...versions.keys()][0] === expected) out.push(`Layout: every running node holds version ${expected} (${up.length} of ${rows.length} nodes running)`);
  else {
    const parts = [...versions.entries()].sort((a, b) => b[0] - a[0]).map(([v, ids]) => `version ${v}: ${ids.join(', ')}`);
    out.push(`Layout: the running nodes do not agree yet (last applied: ${expected ?? 'none'}); ${parts.join('; ') || 'no answer'}`);
  }
  const siteLines = [...state.sites].sort((a, b) => a.index - b.index).map((s) => {
    const all = rows.filter((r) => r.n.site === s.name);
    const ok = all.filter((r) => r.pid !== undefined && r.ready).length;
    return `${s.name} ${ok}/${all.length}${ok === 0 ? ' (down)' : ''}`;
  });
  out.push(`Sites (nodes serving): ${siteLines.join(', ')}`);
  const degraded = [...new Set(up.flatMap((r) => r.st?.grid?.degraded ?? []))];
  out.push(`Degraded policies: ${degraded.length === 0 ? 'none' : ''}`);
  for (const d of degraded) out.push(`  - ${d}`);
  for (const r of rows.filter((x) => x.error)) out.push(`warning: ${r.n.id}: ${r.error}`);
  return `${out.join('\n')}\n`;
}
