// #/map: who talks to which Service, and which pods serve it, drawn from the
// flows seen since the page opened. Three columns: clients, Services,
// backends; an edge's width grows with its flow count.

import { Edge } from '../flows';
import { ViewProps, serviceHref } from '../ui';

/** Nodes drawn per column at most (the busiest ones). */
const MAX_PER_COLUMN = 40;

const WIDTH = 960;
const BOX_W = 250;
const BOX_H = 26;
const ROW = 36;
const TOP = 44;
const COLUMN_X = { client: 20, service: (WIDTH - BOX_W) / 2, backend: WIDTH - BOX_W - 20 };

type Kind = keyof typeof COLUMN_X;

interface MapNode {
  kind: Kind;
  id: string;
  count: number;
  x: number;
  y: number;
}

/** The edges of services in the namespace ("" = all). */
function edgesIn(edges: Iterable<Edge>, namespace: string): Edge[] {
  const out: Edge[] = [];
  for (const e of edges) {
    const svc = e.stage === 'client' ? e.to : e.from;
    if (!namespace || svc.startsWith(`${namespace}/`)) out.push(e);
  }
  return out;
}

/** Keep the busiest ids of a column, in the given order of preference. */
function busiest(counts: Map<string, number>): string[] {
  return [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, MAX_PER_COLUMN)
    .map(([id]) => id);
}

function shorten(label: string, max = 34): string {
  return label.length > max ? `${label.slice(0, max - 1)}…` : label;
}

export function ServiceMap({ cluster, namespace }: ViewProps) {
  const stats = cluster.flows.stats;
  const edges = edgesIn(stats.edges.values(), namespace);

  // Flow counts per node of each column.
  const counts: Record<Kind, Map<string, number>> = { client: new Map(), service: new Map(), backend: new Map() };
  const add = (kind: Kind, id: string, n: number) => counts[kind].set(id, (counts[kind].get(id) ?? 0) + n);
  for (const e of edges) {
    if (e.stage === 'client') {
      add('client', e.from, e.count);
      add('service', e.to, e.count);
    } else {
      add('backend', e.to, e.count);
    }
  }

  // Services in name order; clients and backends next to the first Service
  // they touch, so edges cross less.
  const services = busiest(counts.service).sort();
  const serviceRow = new Map(services.map((s, i) => [s, i]));
  const firstService = (kind: Kind) => {
    const first = new Map<string, number>();
    for (const e of edges) {
      if ((kind === 'client') !== (e.stage === 'client')) continue;
      const [id, svc] = kind === 'client' ? [e.from, e.to] : [e.to, e.from];
      const row = serviceRow.get(svc) ?? Infinity;
      first.set(id, Math.min(first.get(id) ?? Infinity, row));
    }
    return (ids: string[]) =>
      ids.sort((a, b) => (first.get(a) ?? 0) - (first.get(b) ?? 0) || (a < b ? -1 : 1));
  };
  const clients = firstService('client')(busiest(counts.client));
  const backends = firstService('backend')(busiest(counts.backend));

  const rows = Math.max(clients.length, services.length, backends.length, 1);
  const height = TOP + rows * ROW + 10;
  const nodes = new Map<string, MapNode>();
  const place = (kind: Kind, ids: string[]) => {
    const offset = ((rows - ids.length) * ROW) / 2; // center shorter columns
    ids.forEach((id, i) =>
      nodes.set(`${kind}:${id}`, { kind, id, count: counts[kind].get(id) ?? 0, x: COLUMN_X[kind], y: TOP + offset + i * ROW }),
    );
  };
  place('client', clients);
  place('service', services);
  place('backend', backends);

  const max = Math.max(1, ...edges.map((e) => e.count));
  const hidden = counts.client.size + counts.service.size + counts.backend.size - nodes.size;

  return (
    <section id="map">
      <h1>Service map</h1>
      <p class="muted">
        Connections seen since the page opened ({stats.total} flows). Clients on the left, Services in the
        middle, backend pods on the right.
      </p>
      {edges.length === 0 ? <p class="muted" id="map-empty">No flows seen yet.</p> : null}
      {hidden > 0 ? <p class="note">{hidden} less busy nodes not drawn.</p> : null}
      <svg
        id="service-map"
        viewBox={`0 0 ${WIDTH} ${height}`}
        width="100%"
        style={{ maxWidth: `${WIDTH}px` }}
        role="img"
        aria-label="Service map"
      >
        <text class="map-heading" x={COLUMN_X.client} y={20}>
          Clients
        </text>
        <text class="map-heading" x={COLUMN_X.service} y={20}>
          Services
        </text>
        <text class="map-heading" x={COLUMN_X.backend} y={20}>
          Backends
        </text>
        {edges.map((e) => {
          const [fromKind, toKind]: [Kind, Kind] = e.stage === 'client' ? ['client', 'service'] : ['service', 'backend'];
          const a = nodes.get(`${fromKind}:${e.from}`);
          const b = nodes.get(`${toKind}:${e.to}`);
          if (!a || !b) return null;
          const allDropped = e.drops === e.count;
          return (
            <line
              key={`${e.stage}:${e.from}:${e.to}`}
              class={`map-edge${allDropped ? ' dropped' : ''}`}
              data-from={e.from}
              data-to={e.to}
              data-count={e.count}
              x1={a.x + BOX_W}
              y1={a.y + BOX_H / 2}
              x2={b.x}
              y2={b.y + BOX_H / 2}
              stroke-width={1 + 7 * Math.sqrt(e.count / max)}
            >
              <title>
                {e.from} → {e.to}: {e.count} flows{e.drops ? `, ${e.drops} dropped` : ''}
              </title>
            </line>
          );
        })}
        {[...nodes.values()].map((n) => {
          const box = (
            <g
              key={`${n.kind}:${n.id}`}
              class={`map-node map-${n.kind}`}
              data-id={n.id}
              data-kind={n.kind}
              transform={`translate(${n.x},${n.y})`}
            >
              <title>
                {n.id}: {n.count} flows
              </title>
              <rect width={BOX_W} height={BOX_H} rx={5} />
              <text x={8} y={BOX_H / 2 + 4}>
                {shorten(n.id)}
              </text>
            </g>
          );
          if (n.kind !== 'service') return box;
          const [ns, name] = [n.id.slice(0, n.id.indexOf('/')), n.id.slice(n.id.indexOf('/') + 1)];
          return (
            <a key={`link:${n.id}`} href={serviceHref(ns, name)}>
              {box}
            </a>
          );
        })}
      </svg>
    </section>
  );
}
