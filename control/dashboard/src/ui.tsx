// Small pieces shared by the views.

import { ApiError } from './api';
import { Cluster } from './cluster';
import { KubeObject, objectKey, pathOf } from './k8s';
import { Informer } from './watch';

/** What every view is rendered with. */
export interface ViewProps {
  cluster: Cluster;
  /** The namespace filter ("" = all namespaces). */
  namespace: string;
  /** The render time, ticking every second (ages and rates move with it). */
  now: number;
}

/** An API failure shown in place (a 403 says what the user may not do). */
export function ErrorNote({ error, what }: { error: ApiError | null | undefined; what?: string }) {
  if (!error) return null;
  return (
    <div class="error" role="alert" data-code={error.code}>
      {what ? <strong>{what}: </strong> : null}
      {error.message}
    </div>
  );
}

/**
 * A collection's trouble, if any: its error when it could not be listed (or
 * is forbidden), or "Loading" before its first list. A watch that merely
 * reconnects is not shown here (the live indicator says it).
 */
export function InformerNote({ informer, what }: { informer: Informer<KubeObject>; what: string }) {
  const err = informer.error;
  if (err && (!informer.synced || err.code === 401 || err.code === 403)) {
    return <ErrorNote error={err} what={`Cannot list ${what}`} />;
  }
  if (!informer.synced) return <p class="muted loading">Loading {what}…</p>;
  return null;
}

/** Whether an object is in the selected namespace ("" = any). */
export function inNamespace(o: KubeObject, namespace: string): boolean {
  return namespace === '' || o.metadata.namespace === namespace;
}

/** Order by `namespace/name`. */
export function byKey(a: KubeObject, b: KubeObject): number {
  const ka = objectKey(a);
  const kb = objectKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export function podHref(namespace: string, name: string): string {
  return `#/pods/${pathOf(namespace, name)}`;
}

export function serviceHref(namespace: string, name: string): string {
  return `#/services/${pathOf(namespace, name)}`;
}

/** A "namespace/name" key as a link to its pod, when it names one. */
export function PodLink({ id }: { id: string }) {
  const slash = id.indexOf('/');
  if (slash < 0) return <span>{id}</span>;
  return <a href={podHref(id.slice(0, slash), id.slice(slash + 1))}>{id}</a>;
}

/** A rate with one decimal. */
export function fmtRate(r: number): string {
  return r.toFixed(1);
}
