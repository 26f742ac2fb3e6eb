// Everything the dashboard watches, in one place: an informer per resource
// (all namespaces) and the flow streams of every node.

import { Fetcher } from './api';
import { FlowStreams } from './flows';
import { Deployment, EndpointSlice, KubeEvent, KubeObject, Namespace, Node, Pod, Service } from './k8s';
import { Informer, StreamState } from './watch';

/** The live indicator: watching once every stream that can be open is. */
export type LiveState = StreamState;

export class Cluster {
  readonly nodes: Informer<Node>;
  readonly namespaces: Informer<Namespace>;
  readonly pods: Informer<Pod>;
  readonly services: Informer<Service>;
  readonly endpointSlices: Informer<EndpointSlice>;
  readonly deployments: Informer<Deployment>;
  readonly events: Informer<KubeEvent>;
  readonly flows: FlowStreams;

  private readonly listeners = new Set<() => void>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private unsubscribe: (() => void)[] = [];

  /** `fetcher` reads the API; `proxyFetcher` reaches the nodes' flow streams through it. */
  constructor(fetcher: Fetcher, proxyFetcher: Fetcher = fetcher) {
    const informer = <T extends KubeObject>(url: string) => new Informer<T>(url, fetcher);
    this.nodes = informer<Node>('/api/v1/nodes');
    this.namespaces = informer<Namespace>('/api/v1/namespaces');
    this.pods = informer<Pod>('/api/v1/pods');
    this.services = informer<Service>('/api/v1/services');
    this.endpointSlices = informer<EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices');
    this.deployments = informer<Deployment>('/apis/apps/v1/deployments');
    this.events = informer<KubeEvent>('/api/v1/events');
    this.flows = new FlowStreams(proxyFetcher, () => this.changed());
  }

  get informers(): Informer<KubeObject>[] {
    return [this.nodes, this.namespaces, this.pods, this.services, this.endpointSlices, this.deployments, this.events];
  }

  start(): void {
    for (const inf of this.informers) {
      this.unsubscribe.push(inf.subscribe(() => this.changed()));
      inf.start();
    }
    // Follow the flows of exactly the nodes that exist.
    this.unsubscribe.push(this.nodes.subscribe(() => this.flows.sync(this.nodes.items.keys())));
  }

  stop(): void {
    for (const inf of this.informers) inf.stop();
    this.flows.stop();
    for (const u of this.unsubscribe) u();
    this.unsubscribe = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Be told (at most ~10 times a second) when anything changed. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Watching when every informer's stream is open, not counting those the
   * user may not list (their views say so); error when any other failed.
   */
  live(): LiveState {
    const started = this.informers.filter((i) => !i.forbidden);
    if (started.length === 0 || started.some((i) => i.state === 'error')) return 'error';
    return started.every((i) => i.state === 'watching') ? 'watching' : 'connecting';
  }

  private changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      for (const l of this.listeners) l();
    }, 100);
  }
}
