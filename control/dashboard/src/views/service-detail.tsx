// #/services/{ns}/{name}: a Service's endpoints and its live traffic, from
// the flows every node streams (see flows.ts). Re-rendered every second by
// the app's clock, so the chart moves even when no flow arrives.

import { TrafficChart } from '../chart';
import { Endpoint, EndpointSlice, endpointReady, servicePorts, slicesByService } from '../k8s';
import { ErrorNote, InformerNote, PodLink, ViewProps, fmtRate } from '../ui';

/** #traffic-rate: flows per second averaged over this many seconds. */
const RATE_SECONDS = 5;

interface Props extends ViewProps {
  serviceNamespace: string;
  serviceName: string;
}

export function ServiceDetail({ cluster, now, serviceNamespace, serviceName }: Props) {
  const key = `${serviceNamespace}/${serviceName}`;
  const svc = cluster.services.items.get(key);
  const slices = slicesByService(cluster.endpointSlices.items.values()).get(key) ?? [];
  const traffic = cluster.flows.stats.services.get(key);
  const series = traffic ? traffic.window.series(now) : emptySeries(now);
  const rate = cluster.flows.stats.rate(key, RATE_SECONDS, now);
  const forwarded = traffic ? [...traffic.backends.values()].reduce((a, b) => a + b, 0) : 0;
  const backends = traffic ? [...traffic.backends].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)) : [];
  const reasons = traffic ? [...traffic.dropReasons].sort((a, b) => b[1] - a[1]) : [];
  const followed = cluster.flows.nodes();
  const open = followed.filter((n) => n.state === 'open').length;

  return (
    <section id="traffic" data-service={key}>
      <p class="crumbs">
        <a href="#/services">Services</a> / {serviceNamespace}
      </p>
      <h1>{serviceName}</h1>
      <InformerNote informer={cluster.services} what="services" />
      {svc ? (
        <dl class="facts">
          <dt>Type</dt>
          <dd>{svc.spec?.type ?? 'ClusterIP'}</dd>
          <dt>Cluster IP</dt>
          <dd>{svc.spec?.clusterIP ?? '—'}</dd>
          <dt>Ports</dt>
          <dd>{servicePorts(svc) || '—'}</dd>
          <dt>Selector</dt>
          <dd>
            {Object.entries(svc.spec?.selector ?? {})
              .map(([k, v]) => `${k}=${v}`)
              .join(', ') || '—'}
          </dd>
        </dl>
      ) : cluster.services.synced ? (
        <p class="note">No Service {key} (flows to it are still shown).</p>
      ) : null}

      <h2>Endpoints</h2>
      <InformerNote informer={cluster.endpointSlices} what="endpointslices" />
      <EndpointList slices={slices} />

      <h2>Traffic</h2>
      <div class="stats">
        <div class="stat">
          <span class="big" id="traffic-rate">
            {fmtRate(rate)}
          </span>
          <span class="muted">flows/s (last {RATE_SECONDS} s)</span>
        </div>
        <div class="stat">
          <span class="big" id="traffic-total">
            {traffic?.total ?? 0}
          </span>
          <span class="muted">flows since the page opened</span>
        </div>
        <div class="stat">
          <span class={`big ${traffic?.drops ? 'bad' : ''}`} id="traffic-drops">
            {traffic?.drops ?? 0}
          </span>
          <span class="muted">dropped or rejected</span>
        </div>
      </div>
      <TrafficChart x={series.x} y={series.y} />
      <p class="muted small" id="flow-sources">
        New flows per second over the last 60 s, from {open} of {followed.length} node
        {followed.length === 1 ? '' : 's'}.
      </p>
      {followed
        .filter((n) => n.state === 'error')
        .map((n) => (
          <ErrorNote key={n.node} error={n.error} what={`Flows of node ${n.node}`} />
        ))}

      <h3>Backends</h3>
      {backends.length === 0 ? <p class="muted">No forwarded flows yet.</p> : null}
      <div class="backends">
        {backends.map(([pod, count]) => {
          const share = forwarded ? (100 * count) / forwarded : 0;
          return (
            <div class="backend" key={pod} data-pod={pod} data-count={count}>
              <span class="backend-name">
                <PodLink id={pod} />
              </span>
              <span class="bar">
                <span class="fill" style={{ width: `${share}%` }} />
              </span>
              <span class="backend-count num">{count}</span>
              <span class="backend-share num">{share.toFixed(0)}%</span>
            </div>
          );
        })}
      </div>

      <h3>Drops</h3>
      {reasons.length === 0 ? <p class="muted">No drops.</p> : null}
      <ul class="drop-reasons">
        {reasons.map(([reason, n]) => (
          <li class="drop-reason" key={reason} data-reason={reason} data-count={n}>
            <span class="bad">{reason}</span> <b>{n}</b>
          </li>
        ))}
      </ul>
    </section>
  );
}

function emptySeries(now: number): { x: number[]; y: number[] } {
  const end = Math.floor(now / 1000);
  const x = Array.from({ length: 60 }, (_, i) => end - 59 + i);
  return { x, y: x.map(() => 0) };
}

function conditionText(e: Endpoint): string {
  const c = e.conditions ?? {};
  const parts = [endpointReady(e) ? 'ready' : 'not ready'];
  if (c.serving !== undefined) parts.push(c.serving ? 'serving' : 'not serving');
  if (c.terminating) parts.push('terminating');
  return parts.join(', ');
}

function EndpointList({ slices }: { slices: EndpointSlice[] }) {
  const rows = slices.flatMap((s) =>
    (s.endpoints ?? []).map((e) => ({
      e,
      ports: (s.ports ?? []).map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(','),
      slice: s.metadata.name,
      namespace: s.metadata.namespace ?? '',
    })),
  );
  if (rows.length === 0) return <p class="muted">No endpoints.</p>;
  return (
    <ul class="endpoints">
      {rows.map(({ e, ports, slice, namespace }) => {
        const ref = e.targetRef;
        const pod = ref?.kind === 'Pod' && ref.name ? `${ref.namespace ?? namespace}/${ref.name}` : null;
        return (
          <li
            class={`endpoint ${endpointReady(e) ? 'ok' : 'bad'}`}
            key={`${slice}/${e.addresses.join(',')}`}
            data-address={e.addresses.join(',')}
            data-ready={String(endpointReady(e))}
          >
            <code>{e.addresses.join(', ')}</code>
            {ports ? <span class="muted"> :{ports}</span> : null}
            {pod ? (
              <>
                {' → '}
                <PodLink id={pod} />
              </>
            ) : null}
            {e.nodeName ? <span class="muted"> on {e.nodeName}</span> : null}{' '}
            <span class="conditions">{conditionText(e)}</span>
          </li>
        );
      })}
    </ul>
  );
}
