// #/overview: the cluster at a glance.

import { age, eventTime, nodeReadyStatus } from '../k8s';
import { InformerNote, ViewProps, inNamespace } from '../ui';

const PHASES = ['Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'];

export function Overview({ cluster, namespace, now }: ViewProps) {
  const nodes = cluster.nodes.list();
  const ready = nodes.filter((n) => nodeReadyStatus(n) === 'True').length;

  const phases = new Map<string, number>(PHASES.map((p) => [p, 0]));
  let pods = 0;
  for (const p of cluster.pods.items.values()) {
    if (!inNamespace(p, namespace)) continue;
    pods++;
    const phase = p.status?.phase ?? 'Unknown';
    phases.set(phase, (phases.get(phase) ?? 0) + 1);
  }

  const deployments = cluster.deployments.list().filter((d) => inNamespace(d, namespace));
  const available = deployments.filter(
    (d) => (d.status?.availableReplicas ?? 0) >= (d.spec?.replicas ?? 0),
  ).length;
  const services = cluster.services.list().filter((s) => inNamespace(s, namespace)).length;

  const warnings = cluster.events
    .list()
    .filter((e) => e.type === 'Warning' && inNamespace(e, namespace))
    .sort((a, b) => (eventTime(a) < eventTime(b) ? 1 : -1))
    .slice(0, 10);

  return (
    <section id="overview">
      <h1>Overview</h1>
      <div class="cards">
        <div class="card" data-stat="nodes">
          <h2>Nodes</h2>
          <InformerNote informer={cluster.nodes} what="nodes" />
          <p class="big" id="overview-nodes">
            {ready}/{nodes.length}
          </p>
          <p class="muted">ready</p>
        </div>
        <div class="card" data-stat="pods">
          <h2>Pods</h2>
          <InformerNote informer={cluster.pods} what="pods" />
          <p class="big" id="overview-pods">{pods}</p>
          <ul class="phases">
            {[...phases].map(([phase, n]) => (
              <li key={phase} data-phase={phase} class={n === 0 ? 'muted' : ''}>
                <span class={`phase phase-${phase.toLowerCase()}`}>{phase}</span> <b>{n}</b>
              </li>
            ))}
          </ul>
        </div>
        <div class="card" data-stat="deployments">
          <h2>Deployments</h2>
          <InformerNote informer={cluster.deployments} what="deployments" />
          <p class="big" id="overview-deployments">{deployments.length}</p>
          <p class="muted">{available} fully available</p>
        </div>
        <div class="card" data-stat="services">
          <h2>Services</h2>
          <InformerNote informer={cluster.services} what="services" />
          <p class="big" id="overview-services">{services}</p>
          <p class="muted">{cluster.flows.stats.total} flows seen</p>
        </div>
      </div>

      <h2>Recent warnings</h2>
      <InformerNote informer={cluster.events} what="events" />
      {warnings.length === 0 ? (
        <p class="muted">No warning events.</p>
      ) : (
        <table class="list" id="warnings-table">
          <thead>
            <tr>
              <th>Object</th>
              <th>Reason</th>
              <th>Message</th>
              <th>Count</th>
              <th>Last seen</th>
            </tr>
          </thead>
          <tbody>
            {warnings.map((e) => (
              <tr key={e.metadata.uid ?? `${e.metadata.namespace}/${e.metadata.name}`}>
                <td>
                  {e.involvedObject?.kind} {e.involvedObject?.namespace}/{e.involvedObject?.name}
                </td>
                <td>{e.reason}</td>
                <td class="message">{e.message}</td>
                <td>{e.count ?? e.series?.count ?? 1}</td>
                <td>{age(eventTime(e), now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
