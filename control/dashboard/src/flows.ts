// Live traffic from the eBPF data plane.
//
// Every node daemon streams its flows (one JSON line per new connection, or
// per dropped/rejected one) at
//   GET /api/v1/nodes/{node}/proxy/dataplane/flows?follow=true&limit=0
// limit=0 asks for no history, only new flows. FlowStreams follows that
// stream on every node and feeds FlowStats, which keeps per-Service
// aggregates in memory: a 60-s window of 1-s buckets (by arrival time),
// totals, backend spread, drops and the client -> Service -> backend edges
// drawn on the Service map.

import { ApiError, Fetcher, asApiError, readLines, sleep } from './api';

export interface PodRef {
  namespace: string;
  name: string;
}

export interface FlowEndpoint {
  ip: string;
  port: number;
  pod?: PodRef;
  /** The node whose own process opened it (socket-level balancing). */
  node?: string;
}

export interface Flow {
  time?: string;
  node?: string;
  verdict: 'FORWARDED' | 'DROPPED' | 'REJECTED' | string;
  reason?: string;
  protocol?: string;
  hook?: string;
  source: FlowEndpoint;
  destination?: FlowEndpoint;
  service?: { type?: string; namespace?: string; name?: string; port?: number };
  backend?: FlowEndpoint;
}

/** Seconds of history kept per Service. */
export const WINDOW_SECONDS = 60;

/** Edges kept for the map at most (each is a few bytes; this bounds a flood of external clients). */
export const MAX_EDGES = 5000;

export function isDrop(flow: Flow): boolean {
  return flow.verdict === 'DROPPED' || flow.verdict === 'REJECTED';
}

/** The Service a flow went to, as `namespace/name`, when the data plane could name it. */
export function serviceKeyOf(flow: Flow): string | null {
  const s = flow.service;
  return s?.namespace && s.name ? `${s.namespace}/${s.name}` : null;
}

/**
 * Who opened the connection: its pod `namespace/name`, "node <name>" for a
 * process of a node (socket-level balancing), or "external <ip>".
 */
export function clientIdOf(flow: Flow): string {
  const pod = flow.source?.pod;
  if (pod) return `${pod.namespace}/${pod.name}`;
  if (flow.source?.node) return `node ${flow.source.node}`;
  return `external ${flow.source?.ip ?? '?'}`;
}

/** The backend chosen: its pod `namespace/name`, or `ip:port` when it is no pod. */
export function backendIdOf(flow: Flow): string | null {
  const b = flow.backend;
  if (!b) return null;
  return b.pod ? `${b.pod.namespace}/${b.pod.name}` : `${b.ip}:${b.port}`;
}

/** Counts in 1-s buckets over a sliding window, by the time they are added. */
export class RateWindow {
  private readonly counts: number[];
  /** The second (epoch) each slot currently counts for. */
  private readonly seconds: number[];

  constructor(readonly size: number = WINDOW_SECONDS) {
    this.counts = new Array(size).fill(0);
    this.seconds = new Array(size).fill(-1);
  }

  add(nowMs: number, n = 1): void {
    const sec = Math.floor(nowMs / 1000);
    const slot = sec % this.size;
    if (this.seconds[slot] !== sec) {
      this.seconds[slot] = sec;
      this.counts[slot] = 0;
    }
    this.counts[slot] += n;
  }

  /** The count of one epoch second (0 when it is outside the window). */
  at(sec: number): number {
    const slot = sec % this.size;
    return this.seconds[slot] === sec ? this.counts[slot] : 0;
  }

  /** Epoch seconds and counts of the last `n` seconds, the current one last. */
  series(nowMs: number, n: number = this.size): { x: number[]; y: number[] } {
    const now = Math.floor(nowMs / 1000);
    const x: number[] = [];
    const y: number[] = [];
    for (let sec = now - n + 1; sec <= now; sec++) {
      x.push(sec);
      y.push(this.at(sec));
    }
    return { x, y };
  }

  /**
   * Average per second over the last `n` seconds (the current, partial one
   * included), never over more time than since `sinceMs` (when counting began).
   */
  rate(nowMs: number, n: number, sinceMs = 0): number {
    const now = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let sec = now - n + 1; sec <= now; sec++) sum += this.at(sec);
    const windowStartMs = Math.max((now - n + 1) * 1000, sinceMs);
    const spanSeconds = Math.max((nowMs - windowStartMs) / 1000, 1);
    return sum / spanSeconds;
  }
}

/** What has been seen going to one Service since the page opened. */
export class ServiceTraffic {
  readonly window = new RateWindow();
  total = 0;
  drops = 0;
  /** Forwarded flows per backend (pod `ns/name`, or `ip:port`). */
  readonly backends = new Map<string, number>();
  /** Dropped or rejected flows per reason. */
  readonly dropReasons = new Map<string, number>();
  lastSeenMs = 0;
}

/** One arrow of the Service map. `stage` tells its columns: client->service or service->backend. */
export interface Edge {
  stage: 'client' | 'backend';
  from: string;
  to: string;
  count: number;
  drops: number;
}

function bump<K>(map: Map<K, number>, key: K, n = 1): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

/** The aggregates of every flow seen. */
export class FlowStats {
  readonly services = new Map<string, ServiceTraffic>();
  readonly edges = new Map<string, Edge>();
  /** All flows, and those not tied to a named Service. */
  total = 0;
  unattributed = 0;
  /** Edges not kept once MAX_EDGES was reached. */
  edgesDropped = 0;

  constructor(readonly startedMs: number = Date.now()) {}

  add(flow: Flow, nowMs: number = Date.now()): void {
    this.total++;
    const key = serviceKeyOf(flow);
    if (!key) {
      this.unattributed++;
      return;
    }
    let svc = this.services.get(key);
    if (!svc) {
      svc = new ServiceTraffic();
      this.services.set(key, svc);
    }
    svc.total++;
    svc.lastSeenMs = nowMs;
    svc.window.add(nowMs);
    const dropped = isDrop(flow);
    if (dropped) {
      svc.drops++;
      bump(svc.dropReasons, flow.reason || flow.verdict);
    }
    this.edge('client', clientIdOf(flow), key, dropped);
    const backend = backendIdOf(flow);
    if (backend) {
      if (!dropped) bump(svc.backends, backend);
      this.edge('backend', key, backend, dropped);
    }
  }

  private edge(stage: Edge['stage'], from: string, to: string, dropped: boolean): void {
    const id = `${stage}\u0000${from}\u0000${to}`;
    let e = this.edges.get(id);
    if (!e) {
      if (this.edges.size >= MAX_EDGES) {
        this.edgesDropped++;
        return;
      }
      e = { stage, from, to, count: 0, drops: 0 };
      this.edges.set(id, e);
    }
    e.count++;
    if (dropped) e.drops++;
  }

  /** Flows per second to a Service over the last `seconds`. */
  rate(serviceKey: string, seconds: number, nowMs: number = Date.now()): number {
    const svc = this.services.get(serviceKey);
    return svc ? svc.window.rate(nowMs, seconds, this.startedMs) : 0;
  }
}

/** Parse one line of a flow stream; null if it is not a flow. */
export function parseFlow(line: string): Flow | null {
  try {
    const v = JSON.parse(line);
    return v && typeof v === 'object' && typeof v.verdict === 'string' ? (v as Flow) : null;
  } catch {
    return null;
  }
}

export type FollowState = 'connecting' | 'open' | 'error';

/** The flow stream of one node. */
export interface NodeFollow {
  node: string;
  state: FollowState;
  error: ApiError | null;
  /** Flows received from it. */
  flows: number;
}

export function flowsPath(node: string): string {
  return `/api/v1/nodes/${encodeURIComponent(node)}/proxy/dataplane/flows?follow=true&limit=0`;
}

/** Follows the flow stream of every node it is given, feeding one FlowStats. */
export class FlowStreams {
  readonly stats: FlowStats;
  private readonly follows = new Map<string, { info: NodeFollow; controller: AbortController }>();

  constructor(
    private readonly fetcher: Fetcher,
    /** Called on every flow and state change (the caller throttles renders). */
    private readonly onChange: () => void,
    private readonly reconnectMs = 1000,
    nowMs: number = Date.now(),
  ) {
    this.stats = new FlowStats(nowMs);
  }

  /** Follow exactly these nodes: start the new ones, stop those gone. */
  sync(nodes: Iterable<string>): void {
    const wanted = new Set(nodes);
    for (const [node, f] of this.follows) {
      if (!wanted.has(node)) {
        f.controller.abort();
        this.follows.delete(node);
      }
    }
    for (const node of wanted) {
      if (this.follows.has(node)) continue;
      const entry = {
        info: { node, state: 'connecting' as FollowState, error: null, flows: 0 },
        controller: new AbortController(),
      };
      this.follows.set(node, entry);
      void this.follow(entry.info, entry.controller.signal);
    }
  }

  stop(): void {
    this.sync([]);
  }

  /** The followed nodes, by name. */
  nodes(): NodeFollow[] {
    return [...this.follows.values()].map((f) => f.info).sort((a, b) => (a.node < b.node ? -1 : 1));
  }

  private async follow(info: NodeFollow, signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      try {
        const res = await this.fetcher(flowsPath(info.node), { signal });
        info.state = 'open';
        info.error = null;
        failures = 0;
        this.onChange();
        await readLines(res, (line) => {
          const flow = parseFlow(line);
          if (!flow) return;
          info.flows++;
          this.stats.add(flow);
          this.onChange();
        });
        if (signal.aborted) return;
        // The stream only ends when the connection drops: reconnect shortly.
        info.state = 'connecting';
      } catch (e) {
        if (signal.aborted) return;
        failures++;
        info.state = 'error';
        info.error = asApiError(e);
      }
      this.onChange();
      // 1 s after a drop; backing off to 30 s while the node keeps failing (e.g. 403).
      await sleep(Math.min(this.reconnectMs * 2 ** Math.max(0, failures - 1), 30_000), signal);
    }
  }
}
