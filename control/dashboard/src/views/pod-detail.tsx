// #/pods/{ns}/{name}: one pod's status, conditions, containers, events and
// its streamed logs.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, apiFetch, asApiError, readText } from '../api';
import { age, containerStateText, eventCount, eventTime, podReady, podRestarts, podStatus } from '../k8s';
import { ErrorNote, InformerNote, ViewProps } from '../ui';

/** Log text kept in the page at most; older text is cut off. */
const MAX_LOG_CHARS = 512 * 1024;

interface Props extends ViewProps {
  podNamespace: string;
  podName: string;
}

export function PodDetail({ cluster, now, podNamespace, podName }: Props) {
  const key = `${podNamespace}/${podName}`;
  const pod = cluster.pods.items.get(key);
  const statuses = new Map((pod?.status?.containerStatuses ?? []).map((s) => [s.name, s]));
  const containers = pod?.spec?.containers ?? [];
  const events = cluster.events
    .list()
    .filter(
      (e) =>
        e.involvedObject?.kind === 'Pod' &&
        e.involvedObject.name === podName &&
        (e.involvedObject.namespace ?? e.metadata.namespace) === podNamespace,
    )
    .sort((a, b) => (eventTime(a) < eventTime(b) ? 1 : -1));

  return (
    <section id="pod-detail" data-pod={key}>
      <p class="crumbs">
        <a href="#/pods">Pods</a> / {podNamespace}
      </p>
      <h1>{podName}</h1>
      <InformerNote informer={cluster.pods} what="pods" />
      {cluster.pods.synced && !pod ? <p class="error">No pod {key} (it may have been deleted).</p> : null}

      {pod ? (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd id="pod-status">{podStatus(pod)}</dd>
            <dt>Ready</dt>
            <dd>{podReady(pod)}</dd>
            <dt>Restarts</dt>
            <dd>{podRestarts(pod)}</dd>
            <dt>Node</dt>
            <dd>{pod.spec?.nodeName ?? '—'}</dd>
            <dt>Pod IP</dt>
            <dd>{pod.status?.podIP ?? '—'}</dd>
            <dt>QoS</dt>
            <dd>{pod.status?.qosClass ?? '—'}</dd>
            <dt>Age</dt>
            <dd>{age(pod.metadata.creationTimestamp, now)}</dd>
          </dl>
          {pod.status?.message ? <p class="note">{pod.status.message}</p> : null}

          <h2>Conditions</h2>
          <table class="list" id="pod-conditions">
            <thead>
              <tr>
                <th>Type</th>
                <th>Status</th>
                <th>Reason</th>
                <th>Since</th>
              </tr>
            </thead>
            <tbody>
              {(pod.status?.conditions ?? []).map((c) => (
                <tr key={c.type} data-condition={c.type}>
                  <td>{c.type}</td>
                  <td class={c.status === 'True' ? 'ok' : 'bad'}>{c.status}</td>
                  <td>{c.reason ?? ''}</td>
                  <td>{age(c.lastTransitionTime, now)}</td>
                </tr>
              ))}
            </tbody>
          </table>

          <h2>Containers</h2>
          <table class="list" id="pod-containers">
            <thead>
              <tr>
                <th>Name</th>
                <th>Image</th>
                <th>Ready</th>
                <th>State</th>
                <th class="num">Restarts</th>
              </tr>
            </thead>
            <tbody>
              {containers.map((c) => {
                const s = statuses.get(c.name);
                return (
                  <tr key={c.name} data-container={c.name}>
                    <td>{c.name}</td>
                    <td class="image">{c.image ?? ''}</td>
                    <td>{s?.ready ? 'yes' : 'no'}</td>
                    <td>{containerStateText(s)}</td>
                    <td class="num">{s?.restartCount ?? 0}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      ) : null}

      <h2>Events</h2>
      <InformerNote informer={cluster.events} what="events" />
      {cluster.events.synced && events.length === 0 ? <p class="muted">No events.</p> : null}
      <ul class="events">
        {events.map((e) => (
          <li
            class="event"
            key={e.metadata.uid ?? e.metadata.name}
            data-type={e.type}
            data-reason={e.reason}
            data-count={eventCount(e)}
          >
            <span class={`event-type ${e.type === 'Warning' ? 'bad' : ''}`}>{e.type}</span>{' '}
            <span class="event-reason">{e.reason}</span>{' '}
            <span class="event-message">{e.message}</span>{' '}
            <span class="event-count" title="count">
              ×{eventCount(e)}
            </span>{' '}
            <span class="event-age muted">{age(eventTime(e), now)} ago</span>
          </li>
        ))}
      </ul>

      <h2>Logs</h2>
      {/* Wait for the pod list: the container names decide the request. */}
      {cluster.pods.synced || cluster.pods.error ? (
        <PodLogs
          namespace={podNamespace}
          name={podName}
          containers={[...(pod?.spec?.initContainers ?? []), ...containers].map((c) => c.name)}
          defaultContainer={containers[0]?.name}
        />
      ) : null}
    </section>
  );
}

type LogState = 'connecting' | 'streaming' | 'ended' | 'error';

/** The pod's logs, followed while the view is open (the request is aborted on leaving). */
function PodLogs(props: { namespace: string; name: string; containers: string[]; defaultContainer?: string }) {
  const { namespace, name, containers } = props;
  const several = containers.length > 1;
  const [picked, setPicked] = useState<string | null>(null);
  const container = picked ?? props.defaultContainer ?? containers[0] ?? '';
  const [state, setState] = useState<LogState>('connecting');
  const [error, setError] = useState<ApiError | null>(null);
  const [attempt, setAttempt] = useState(0);
  const pre = useRef<HTMLPreElement>(null);

  useEffect(() => {
    const el = pre.current;
    if (!el) return;
    el.textContent = '';
    setState('connecting');
    setError(null);
    const controller = new AbortController();
    let query = 'tailLines=200&follow=true';
    if (several && container) query += `&container=${encodeURIComponent(container)}`;
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}/log?${query}`;

    (async () => {
      try {
        const res = await apiFetch(path, { signal: controller.signal, headers: { Accept: '*/*' } });
        setState('streaming');
        await readText(res, (text) => appendLog(el, text));
        if (!controller.signal.aborted) setState('ended');
      } catch (e) {
        if (controller.signal.aborted) return;
        setError(asApiError(e));
        setState('error');
      }
    })();
    return () => controller.abort();
  }, [namespace, name, container, several, attempt]);

  return (
    <div class="logs">
      <div class="toolbar">
        {several ? (
          <label>
            Container{' '}
            <select
              id="log-container"
              value={container}
              onChange={(e) => setPicked((e.currentTarget as HTMLSelectElement).value)}
            >
              {containers.map((c) => (
                <option key={c} value={c}>
                  {c}
                </option>
              ))}
            </select>
          </label>
        ) : null}
        <span class={`log-state log-${state}`} id="pod-logs-state">
          {state === 'connecting' ? 'connecting…' : state === 'streaming' ? 'following' : state === 'ended' ? 'stream ended' : 'failed'}
        </span>
        {state === 'ended' || state === 'error' ? (
          <button type="button" onClick={() => setAttempt((n) => n + 1)}>
            Reconnect
          </button>
        ) : null}
      </div>
      <ErrorNote error={error} what="Logs" />
      <pre id="pod-logs" ref={pre} />
    </div>
  );
}

/** Append log text, keeping the view pinned to the bottom if it was there. */
function appendLog(el: HTMLPreElement, text: string): void {
  const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
  let all = (el.textContent ?? '') + text;
  if (all.length > MAX_LOG_CHARS) {
    all = all.slice(all.length - MAX_LOG_CHARS);
    all = all.slice(all.indexOf('\n') + 1); // start on a whole line
  }
  el.textContent = all;
  if (atBottom) el.scrollTop = el.scrollHeight;
}
