// #/services: every Service, its ready endpoints and its live request rate.

import { objectKey, readyEndpoints, servicePorts, slicesByService } from '../k8s';
import { InformerNote, ViewProps, byKey, fmtRate, inNamespace, serviceHref } from '../ui';

/** The table's rate column: new flows per second over this many seconds. */
const RATE_SECONDS = 10;

export function Services({ cluster, namespace, now }: ViewProps) {
  const services = cluster.services
    .list()
    .filter((s) => inNamespace(s, namespace))
    .sort(byKey);
  const slices = slicesByService(cluster.endpointSlices.items.values());
  const stats = cluster.flows.stats;

  return (
    <section id="services">
      <h1>Services</h1>
      <InformerNote informer={cluster.services} what="services" />
      <InformerNote informer={cluster.endpointSlices} what="endpointslices" />
      <table class="list" id="services-table">
        <thead>
          <tr>
            <th>Namespace</th>
            <th>Name</th>
            <th>Type</th>
            <th>Cluster IP</th>
            <th>Ports</th>
            <th class="num">Endpoints</th>
            <th class="num" title={`new flows per second, last ${RATE_SECONDS} s`}>
              Flows/s
            </th>
          </tr>
        </thead>
        <tbody>
          {services.map((s) => {
            const key = objectKey(s);
            const ns = s.metadata.namespace ?? '';
            return (
              <tr key={key} data-service={key}>
                <td class="namespace">{ns}</td>
                <td class="name">
                  <a href={serviceHref(ns, s.metadata.name)}>{s.metadata.name}</a>
                </td>
                <td class="type">{s.spec?.type ?? 'ClusterIP'}</td>
                <td class="cluster-ip">{s.spec?.clusterIP ?? ''}</td>
                <td class="ports">{servicePorts(s)}</td>
                <td class="endpoints num">{readyEndpoints(slices.get(key))}</td>
                <td class="rate num">{fmtRate(stats.rate(key, RATE_SECONDS, now))}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {cluster.services.synced && services.length === 0 ? <p class="muted">No services.</p> : null}
    </section>
  );
}
