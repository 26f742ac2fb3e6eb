// #/pods: every pod (in the selected namespace), filtered by name.
// At most MAX_ROWS rows are drawn so thousands of pods stay responsive.

import { useState } from 'preact/hooks';
import { age, objectKey, podReady, podRestarts, podStatus } from '../k8s';
import { InformerNote, ViewProps, byKey, inNamespace, podHref } from '../ui';

export const MAX_ROWS = 200;

export function Pods({ cluster, namespace, now }: ViewProps) {
  const [filter, setFilter] = useState('');
  const needle = filter.trim().toLowerCase();
  const pods = cluster.pods
    .list()
    .filter((p) => inNamespace(p, namespace) && (!needle || p.metadata.name.toLowerCase().includes(needle)))
    .sort(byKey);
  const shown = pods.slice(0, MAX_ROWS);

  return (
    <section id="pods">
      <h1>Pods</h1>
      <div class="toolbar">
        <input
          id="pod-filter"
          type="search"
          placeholder="Filter by name"
          value={filter}
          onInput={(e) => setFilter((e.currentTarget as HTMLInputElement).value)}
        />
        <span id="pods-count">{pods.length} pods</span>
      </div>
      <InformerNote informer={cluster.pods} what="pods" />
      <table class="list" id="pods-table">
        <thead>
          <tr>
            <th>Namespace</th>
            <th>Name</th>
            <th>Ready</th>
            <th>Status</th>
            <th class="num">Restarts</th>
            <th>Node</th>
            <th>IP</th>
            <th>Age</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((p) => {
            const status = podStatus(p);
            const ns = p.metadata.namespace ?? '';
            return (
              <tr key={objectKey(p)} data-pod={objectKey(p)}>
                <td class="namespace">{ns}</td>
                <td class="name">
                  <a href={podHref(ns, p.metadata.name)}>{p.metadata.name}</a>
                </td>
                <td class="ready">{podReady(p)}</td>
                <td class={`status status-${statusClass(status)}`}>{status}</td>
                <td class="restarts num">{podRestarts(p)}</td>
                <td class="node">{p.spec?.nodeName ?? ''}</td>
                <td class="ip">{p.status?.podIP ?? ''}</td>
                <td class="age">{age(p.metadata.creationTimestamp, now)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {pods.length > shown.length ? (
        <p class="note" id="pods-truncated">
          showing {shown.length} of {pods.length}; filter to narrow
        </p>
      ) : null}
      {cluster.pods.synced && pods.length === 0 ? <p class="muted">No pods.</p> : null}
    </section>
  );
}

/** Colour class of a status: ok, done, wait or bad. */
function statusClass(status: string): string {
  if (status === 'Running') return 'ok';
  if (status === 'Succeeded' || status === 'Completed') return 'done';
  if (status === 'Pending' || status === 'ContainerCreating' || status === 'Terminating' || /^Init:\d+\/\d+$/.test(status))
    return 'wait';
  return 'bad';
}
