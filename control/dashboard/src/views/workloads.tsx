// #/workloads: Deployments, with scale and rollout-restart actions.

import { useEffect, useRef, useState } from 'preact/hooks';
import { asApiError, mergePatch } from '../api';
import { Deployment, age, deploymentReady, objectKey, rfc3339Now } from '../k8s';
import { InformerNote, ViewProps, byKey, inNamespace } from '../ui';

function deploymentPath(d: Deployment): string {
  const ns = encodeURIComponent(d.metadata.namespace ?? 'default');
  return `/apis/apps/v1/namespaces/${ns}/deployments/${encodeURIComponent(d.metadata.name)}`;
}

/** Set the replica count through the scale subresource. */
export function scaleDeployment(d: Deployment, replicas: number): Promise<unknown> {
  return mergePatch(`${deploymentPath(d)}/scale`, { spec: { replicas } });
}

/** What `kubectl rollout restart` does: stamp the pod template so every pod is replaced. */
export function restartDeployment(d: Deployment, now: Date = new Date()): Promise<unknown> {
  return mergePatch(deploymentPath(d), {
    spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': rfc3339Now(now) } } } },
  });
}

function DeploymentRow({ d, now }: { d: Deployment; now: number }) {
  const desired = d.spec?.replicas ?? 0;
  // What the user typed; null follows the live spec.replicas.
  const [draft, setDraft] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [done, setDone] = useState('');
  const input = useRef<HTMLInputElement>(null);
  // Once the Deployment says what was typed (our scale arrived), follow it again.
  useEffect(() => {
    if (draft !== null && Number(draft) === desired) setDraft(null);
  }, [desired]);

  const act = async (what: string, action: () => Promise<unknown>) => {
    setBusy(true);
    setError('');
    setDone('');
    try {
      await action();
      setDone(what);
      return true;
    } catch (e) {
      setError(asApiError(e).message);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const scale = async () => {
    const text = (input.current?.value ?? draft ?? String(desired)).trim();
    const n = Number(text);
    if (text === '' || !Number.isInteger(n) || n < 0) {
      setError('Replicas must be a whole number, 0 or more.');
      return;
    }
    await act(`scaled to ${n}`, () => scaleDeployment(d, n));
  };

  return (
    <tr data-deployment={objectKey(d)}>
      <td class="namespace">{d.metadata.namespace}</td>
      <td class="name">{d.metadata.name}</td>
      <td class="ready">{deploymentReady(d)}</td>
      <td class="updated num">{d.status?.updatedReplicas ?? 0}</td>
      <td class="available num">{d.status?.availableReplicas ?? 0}</td>
      <td class="age">{age(d.metadata.creationTimestamp, now)}</td>
      <td class="actions">
        <input
          class="replicas"
          ref={input}
          type="number"
          min={0}
          step={1}
          aria-label={`Replicas of ${d.metadata.name}`}
          value={draft ?? String(desired)}
          onInput={(e) => setDraft((e.currentTarget as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') void scale();
          }}
        />
        <button class="scale" type="button" disabled={busy} onClick={() => void scale()}>
          Scale
        </button>
        <button
          class="restart"
          type="button"
          disabled={busy}
          onClick={() => void act('restarted', () => restartDeployment(d))}
        >
          Restart
        </button>
        <span class="action-error" role={error ? 'alert' : undefined}>
          {error}
        </span>
        {done && !error ? <span class="action-ok">{done}</span> : null}
      </td>
    </tr>
  );
}

export function Workloads({ cluster, namespace, now }: ViewProps) {
  const deployments = cluster.deployments
    .list()
    .filter((d) => inNamespace(d, namespace))
    .sort(byKey);

  return (
    <section id="workloads">
      <h1>Deployments</h1>
      <InformerNote informer={cluster.deployments} what="deployments" />
      <table class="list" id="deployments-table">
        <thead>
          <tr>
            <th>Namespace</th>
            <th>Name</th>
            <th>Ready</th>
            <th class="num">Up-to-date</th>
            <th class="num">Available</th>
            <th>Age</th>
            <th>Replicas</th>
          </tr>
        </thead>
        <tbody>
          {deployments.map((d) => (
            <DeploymentRow key={objectKey(d)} d={d} now={now} />
          ))}
        </tbody>
      </table>
      {cluster.deployments.synced && deployments.length === 0 ? <p class="muted">No deployments.</p> : null}
    </section>
  );
}
