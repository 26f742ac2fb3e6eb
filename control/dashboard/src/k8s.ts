// The few Kubernetes object fields the dashboard reads, and how it derives
// what it shows from them (kubectl's conventions where there is one).

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface Node extends KubeObject {
  spec?: { unschedulable?: boolean };
  status?: {
    conditions?: Condition[];
    addresses?: { type: string; address: string }[];
    nodeInfo?: { kubeletVersion?: string };
  };
}

export type Namespace = KubeObject;

export interface ContainerState {
  running?: { startedAt?: string };
  waiting?: { reason?: string; message?: string };
  terminated?: { reason?: string; exitCode?: number; signal?: number; message?: string };
}

export interface ContainerStatus {
  name: string;
  ready?: boolean;
  restartCount?: number;
  image?: string;
  state?: ContainerState;
  lastState?: ContainerState;
}

export interface Container {
  name: string;
  image?: string;
  ports?: { containerPort: number; protocol?: string; name?: string }[];
}

export interface Pod extends KubeObject {
  spec?: { nodeName?: string; containers?: Container[]; initContainers?: Container[] };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    podIP?: string;
    hostIP?: string;
    qosClass?: string;
    startTime?: string;
    conditions?: Condition[];
    containerStatuses?: ContainerStatus[];
    initContainerStatuses?: ContainerStatus[];
  };
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
  protocol?: string;
}

export interface Service extends KubeObject {
  spec?: {
    type?: string;
    clusterIP?: string;
    externalIPs?: string[];
    ports?: ServicePort[];
    selector?: Record<string, string>;
  };
}

export interface Endpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  nodeName?: string;
  targetRef?: { kind?: string; namespace?: string; name?: string };
}

export interface EndpointSlice extends KubeObject {
  addressType?: string;
  endpoints?: Endpoint[] | null;
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
}

export interface Deployment extends KubeObject {
  spec?: { replicas?: number };
  status?: {
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
  };
}

export interface KubeEvent extends KubeObject {
  involvedObject?: { kind?: string; namespace?: string; name?: string; uid?: string };
  type?: string;
  reason?: string;
  message?: string;
  count?: number;
  series?: { count?: number; lastObservedTime?: string };
  firstTimestamp?: string;
  lastTimestamp?: string;
  eventTime?: string;
}

/** The key objects are stored under: `namespace/name`, or `name` when cluster-scoped. */
export function objectKey(o: KubeObject): string {
  const { namespace, name } = o.metadata;
  return namespace ? `${namespace}/${name}` : name;
}

/** Age like kubectl prints it: 42s, 5m, 3h, 12d, 2y. */
export function age(timestamp: string | undefined, now: number = Date.now()): string {
  if (!timestamp) return '';
  const then = Date.parse(timestamp);
  if (Number.isNaN(then)) return '';
  const s = Math.max(0, Math.floor((now - then) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 730) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

// ---- Nodes ----

/** The Ready condition's status: "True", "False" or "Unknown". */
export function nodeReadyStatus(node: Node): string {
  return node.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';
}

/** STATUS as kubectl shows it: Ready / NotReady / Unknown, plus SchedulingDisabled. */
export function nodeStatusText(node: Node): string {
  const ready = nodeReadyStatus(node);
  const text = ready === 'True' ? 'Ready' : ready === 'False' ? 'NotReady' : 'Unknown';
  return node.spec?.unschedulable ? `${text},SchedulingDisabled` : text;
}

export function nodeInternalIP(node: Node): string {
  return node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '';
}

// ---- Pods ----

/** "ready/total" containers, e.g. "1/1". */
export function podReady(pod: Pod): string {
  const statuses = pod.status?.containerStatuses ?? [];
  const total = pod.spec?.containers?.length ?? statuses.length;
  return `${statuses.filter((s) => s.ready).length}/${total}`;
}

export function podRestarts(pod: Pod): number {
  return (pod.status?.containerStatuses ?? []).reduce((n, s) => n + (s.restartCount ?? 0), 0);
}

/** Why a container is not running, if it says (CrashLoopBackOff, Error, Completed, ...). */
function containerReason(s: ContainerStatus): string | undefined {
  const { waiting, terminated } = s.state ?? {};
  if (waiting?.reason) return waiting.reason;
  if (terminated) {
    if (terminated.reason) return terminated.reason;
    if (terminated.signal) return `Signal:${terminated.signal}`;
    return `ExitCode:${terminated.exitCode ?? 0}`;
  }
  return undefined;
}

/**
 * STATUS as kubectl shows it: an init container's trouble (Init:...), else a
 * container's waiting/terminated reason, else Terminating while being
 * deleted, else the pod's reason (Evicted, ...) or phase.
 */
export function podStatus(pod: Pod): string {
  const inits = pod.status?.initContainerStatuses ?? [];
  const initCount = pod.spec?.initContainers?.length ?? inits.length;
  for (let i = 0; i < inits.length; i++) {
    const s = inits[i];
    const t = s.state?.terminated;
    if (t && t.exitCode === 0) continue; // this one finished
    if (t) return `Init:${t.reason || (t.signal ? `Signal:${t.signal}` : `ExitCode:${t.exitCode}`)}`;
    const w = s.state?.waiting;
    if (w?.reason && w.reason !== 'PodInitializing') return `Init:${w.reason}`;
    return `Init:${i}/${initCount}`;
  }
  for (const s of pod.status?.containerStatuses ?? []) {
    const reason = containerReason(s);
    if (reason) return reason;
  }
  if (pod.metadata.deletionTimestamp) return 'Terminating';
  return pod.status?.reason || pod.status?.phase || 'Unknown';
}

/** Whether the pod still holds resources on its node (not Succeeded/Failed). */
export function podActive(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed';
}

/** A container's state in a few words. */
export function containerStateText(s: ContainerStatus | undefined): string {
  if (!s?.state) return 'unknown';
  const { running, waiting, terminated } = s.state;
  if (running) return 'running';
  if (waiting) return `waiting: ${waiting.reason ?? ''}`.trim();
  if (terminated) return `terminated: ${terminated.reason ?? ''} (exit ${terminated.exitCode ?? '?'})`;
  return 'unknown';
}

// ---- Events ----

/** When an event last happened (for sorting, newest first). */
export function eventTime(e: KubeEvent): string {
  return e.lastTimestamp || e.series?.lastObservedTime || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp || '';
}

export function eventCount(e: KubeEvent): number {
  return e.count ?? e.series?.count ?? 1;
}

// ---- Services ----

/** Ports like kubectl: "80/TCP", "80:30080/TCP", joined by commas. */
export function servicePorts(svc: Service): string {
  return (svc.spec?.ports ?? [])
    .map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`)
    .join(',');
}

/** The label tying an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** EndpointSlices grouped by the `namespace/name` of their Service. */
export function slicesByService(slices: Iterable<EndpointSlice>): Map<string, EndpointSlice[]> {
  const out = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const key = `${s.metadata.namespace}/${svc}`;
    const list = out.get(key);
    if (list) list.push(s);
    else out.set(key, [s]);
  }
  return out;
}

/** Whether an endpoint counts as ready (a missing condition means ready). */
export function endpointReady(e: Endpoint): boolean {
  return e.conditions?.ready !== false;
}

/** Ready endpoints across a Service's slices. */
export function readyEndpoints(slices: EndpointSlice[] | undefined): number {
  let n = 0;
  for (const s of slices ?? []) for (const e of s.endpoints ?? []) if (endpointReady(e)) n++;
  return n;
}

// ---- Deployments ----

/** "ready/desired", e.g. "2/3" (missing readyReplicas counts as 0). */
export function deploymentReady(d: Deployment): string {
  return `${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 0}`;
}

/** Now as RFC 3339 in whole seconds, as `kubectl rollout restart` writes it. */
export function rfc3339Now(now: Date = new Date()): string {
  return now.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The path segment(s) for a namespaced object: URL-encoded `ns/name`. */
export function pathOf(namespace: string, name: string): string {
  return `${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}
