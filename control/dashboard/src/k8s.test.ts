import { describe, expect, it } from 'vitest';
import { age, deploymentReady, podReady, podStatus, readyEndpoints, rfc3339Now, servicePorts, slicesByService } from './k8s';
import { parseRoute } from './route';

describe('pods', () => {
  const base = {
    metadata: { name: 'p', namespace: 'default' },
    spec: { containers: [{ name: 'a' }, { name: 'b' }] },
  };

  it('shows a container reason before the phase', () => {
    const pod = {
      ...base,
      status: {
        phase: 'Running',
        containerStatuses: [
          { name: 'a', ready: true, restartCount: 0, state: { running: {} } },
          { name: 'b', ready: false, restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff' } } },
        ],
      },
    };
    expect(podStatus(pod)).toBe('CrashLoopBackOff');
    expect(podReady(pod)).toBe('1/2');
  });

  it('shows Terminating while deleted, else the phase', () => {
    const running = { ...base, status: { phase: 'Running', containerStatuses: [] } };
    expect(podStatus(running)).toBe('Running');
    const deleted = { ...running, metadata: { ...base.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } };
    expect(podStatus(deleted)).toBe('Terminating');
  });
});

describe('formatting', () => {
  it('prints ages like kubectl', () => {
    const now = Date.parse('2026-01-10T00:00:00Z');
    expect(age('2026-01-09T23:59:30Z', now)).toBe('30s');
    expect(age('2026-01-09T23:00:00Z', now)).toBe('60m');
    expect(age('2026-01-09T00:00:00Z', now)).toBe('24h');
    expect(age('2026-01-01T00:00:00Z', now)).toBe('9d');
  });

  it('prints ports, readiness and restart times', () => {
    expect(
      servicePorts({ metadata: { name: 's' }, spec: { ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }] } }),
    ).toBe('80:30080/TCP,53/UDP');
    expect(deploymentReady({ metadata: { name: 'd' }, spec: { replicas: 2 }, status: {} })).toBe('0/2');
    expect(rfc3339Now(new Date('2026-12-03T07:30:00.123Z'))).toBe('2026-12-03T07:30:00Z');
  });

  it('counts ready endpoints of a Service across its slices', () => {
    const label = { 'kubernetes.io/service-name': 'web' };
    const slices = slicesByService([
      {
        metadata: { name: 'web-1', namespace: 'default', labels: label },
        endpoints: [{ addresses: ['10.1.0.1'] }, { addresses: ['10.1.0.2'], conditions: { ready: false } }],
      },
      { metadata: { name: 'web-2', namespace: 'default', labels: label }, endpoints: [{ addresses: ['10.1.0.3'], conditions: { ready: true } }] },
      { metadata: { name: 'web-3', namespace: 'other', labels: label }, endpoints: [{ addresses: ['10.1.0.4'] }] },
    ]);
    expect(readyEndpoints(slices.get('default/web'))).toBe(2);
    expect(readyEndpoints(slices.get('default/none'))).toBe(0);
  });
});

describe('routes', () => {
  it('parses views and detail pages', () => {
    expect(parseRoute('')).toEqual({ view: 'overview' });
    expect(parseRoute('#/pods')).toEqual({ view: 'pods' });
    expect(parseRoute('#/pods/kube-system/dns%2Dx')).toEqual({ view: 'pod', namespace: 'kube-system', name: 'dns-x' });
    expect(parseRoute('#/services/default/web')).toEqual({ view: 'service', namespace: 'default', name: 'web' });
    expect(parseRoute('#/nope').view).toBe('notfound');
  });
});
