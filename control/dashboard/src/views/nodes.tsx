// #/nodes: every node, its readiness and how many pods it runs.

import { age, nodeInternalIP, nodeReadyStatus, nodeStatusText, podActive } from '../k8s';
import { InformerNote, ViewProps, byKey } from '../ui';

export function Nodes({ cluster, now }: ViewProps) {
  // Pods per node: those still holding resources there (not Succeeded/Failed).
  const podsOn = new Map<string, number>();
  for (const p of cluster.pods.items.values()) {
    const node = p.spec?.nodeName;
    if (node && podActive(p)) podsOn.set(node, (podsOn.get(node) ?? 0) + 1);
  }
  const nodes = cluster.nodes.list().sort(byKey);

  return (
    <section id="nodes">
      <h1>Nodes</h1>
      <InformerNote informer={cluster.nodes} what="nodes" />
      <table class="list" id="nodes-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Internal IP</th>
            <th>Kubelet</th>
            <th class="num">Pods</th>
            <th>Age</th>
          </tr>
        </thead>
        <tbody>
          {nodes.map((n) => {
            const ready = nodeReadyStatus(n);
            return (
              <tr key={n.metadata.name} data-node={n.metadata.name}>
                <td class="name">{n.metadata.name}</td>
                <td class={`ready ready-${ready.toLowerCase()}`} data-status={ready}>
                  {nodeStatusText(n)}
                </td>
                <td class="ip">{nodeInternalIP(n)}</td>
                <td class="version">{n.status?.nodeInfo?.kubeletVersion ?? ''}</td>
                <td class="pods num">{cluster.pods.synced ? (podsOn.get(n.metadata.name) ?? 0) : ''}</td>
                <td class="age">{age(n.metadata.creationTimestamp, now)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {cluster.nodes.synced && nodes.length === 0 ? <p class="muted">No nodes.</p> : null}
    </section>
  );
}
