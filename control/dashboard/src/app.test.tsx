// @vitest-environment happy-dom
//
// The whole page against a fake API server: sign-in, watches, actions,
// flows and logs, found by the same hooks a browser test would use.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const enc = new TextEncoder();

/** A response body we keep writing to. */
class Channel {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly stream = new ReadableStream<Uint8Array>({ start: (c) => (this.controller = c) });
  push(text: string): void {
    this.controller.enqueue(enc.encode(text));
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
const status = (code: number, message: string) => json({ kind: 'Status', status: 'Failure', code, message }, code);
const event = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;
const ago = (s: number) => new Date(Date.now() - s * 1000).toISOString();

const lists: Record<string, unknown[]> = {
  '/api/v1/nodes': [
    {
      metadata: { name: 'n1', creationTimestamp: ago(3600) },
      status: {
        conditions: [{ type: 'Ready', status: 'True' }],
        addresses: [{ type: 'InternalIP', address: '10.0.0.1' }],
        nodeInfo: { kubeletVersion: 'v1.31.0-sluice' },
      },
    },
  ],
  '/api/v1/namespaces': [{ metadata: { name: 'default' } }, { metadata: { name: 'kube-system' } }],
  '/api/v1/pods': [
    {
      metadata: { name: 'web-a', namespace: 'default', creationTimestamp: ago(60) },
      spec: { nodeName: 'n1', containers: [{ name: 'app' }, { name: 'sidecar' }] },
      status: {
        phase: 'Running',
        podIP: '10.1.0.7',
        containerStatuses: [
          { name: 'app', ready: true, restartCount: 0, state: { running: {} } },
          { name: 'sidecar', ready: false, restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } } },
        ],
      },
    },
    {
      metadata: { name: 'dns', namespace: 'kube-system', creationTimestamp: ago(600) },
      spec: { nodeName: 'n1', containers: [{ name: 'dns' }] },
      status: { phase: 'Running', containerStatuses: [{ name: 'dns', ready: true, state: { running: {} } }] },
    },
  ],
  '/api/v1/services': [
    {
      metadata: { name: 'web', namespace: 'default' },
      spec: { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }] },
    },
  ],
  '/apis/discovery.k8s.io/v1/endpointslices': [
    {
      metadata: { name: 'web-x', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
      ports: [{ port: 8080, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.1.0.7'], conditions: { ready: true, serving: true }, targetRef: { kind: 'Pod', name: 'web-a' } },
        { addresses: ['10.1.0.8'], conditions: { ready: false, serving: false, terminating: true } },
      ],
    },
  ],
  '/apis/apps/v1/deployments': [
    { metadata: { name: 'web', namespace: 'default' }, spec: { replicas: 2 }, status: { readyReplicas: 1 } },
    { metadata: { name: 'locked', namespace: 'default' }, spec: { replicas: 1 }, status: {} },
  ],
};

const watches = new Map<string, Channel>();
const flows = new Channel();
const patches: { path: string; type: string | null; body: unknown }[] = [];
const requests: string[] = [];
let logQuery = '';

async function fakeFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const url = new URL(String(input), 'https://api.test');
  const path = url.pathname;
  const headers = new Headers(init.headers);
  requests.push(`${init.method ?? 'GET'} ${path}${url.search}`);
  if (path.endsWith('/selfsubjectreviews')) {
    return headers.get('Authorization') === 'Bearer good'
      ? json({ status: { userInfo: { username: 'alice' } } }, 201)
      : status(401, 'Unauthorized');
  }
  if (headers.get('Authorization') !== 'Bearer good') return status(401, 'Unauthorized');
  if (init.method === 'PATCH') {
    if (path.includes('/locked')) return status(403, 'deployments.apps "locked" is forbidden');
    patches.push({ path, type: headers.get('Content-Type'), body: JSON.parse(String(init.body)) });
    return json({});
  }
  if (path === '/api/v1/events') return status(403, 'events is forbidden: User "alice" cannot list resource "events"');
  if (path.endsWith('/proxy/dataplane/flows')) return new Response(flows.stream);
  if (path.endsWith('/log')) {
    logQuery = url.search;
    return new Response('line one\nline two\n');
  }
  const items = lists[path];
  if (!items) return status(404, 'not found');
  if (url.searchParams.get('watch') === '1') {
    const ch = new Channel();
    watches.set(path, ch);
    return new Response(ch.stream);
  }
  return json({ metadata: { resourceVersion: '100' }, items });
}

/** Resolves once `check` passes (checking every 10 ms, for up to 3 s). */
async function until(check: () => unknown): Promise<void> {
  const end = Date.now() + 3000;
  for (;;) {
    try {
      if (check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${check}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const $ = <T extends Element = HTMLElement>(sel: string) => document.querySelector<T>(sel);
const $$ = (sel: string) => [...document.querySelectorAll(sel)];
const text = (sel: string) => $(sel)?.textContent?.trim() ?? '';

function type(el: HTMLInputElement | HTMLTextAreaElement, value: string): void {
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
}

function go(hash: string): void {
  location.hash = hash;
  window.dispatchEvent(new Event('hashchange'));
}

beforeAll(async () => {
  // Canvas is not drawn here: any context call is accepted.
  const ctx: unknown = new Proxy({}, { get: (_t, k) => (k === 'measureText' ? () => ({ width: 10 }) : () => {}) });
  HTMLCanvasElement.prototype.getContext = (() => ctx) as never;
  globalThis.Path2D ??= class {
    moveTo() {}
    lineTo() {}
    rect() {}
    arc() {}
    closePath() {}
    bezierCurveTo() {}
  } as never;
  globalThis.ResizeObserver ??= class {
    observe() {}
    disconnect() {}
    unobserve() {}
  } as never;
  globalThis.fetch = fakeFetch as typeof fetch;
  sessionStorage.clear();
  document.body.innerHTML = '<div id="app"></div>';
  await import('./main');
});

afterAll(() => {
  $<HTMLButtonElement>('#logout')?.click();
});

describe('the dashboard', () => {
  it('asks for a token and shows the API message for a bad one', async () => {
    await until(() => $('#token'));
    type($<HTMLTextAreaElement>('#token')!, 'bad');
    $<HTMLButtonElement>('#login')!.click();
    await until(() => text('#login-error') === 'Unauthorized');
  });

  it('signs in, keeps the token and goes live', async () => {
    type($<HTMLTextAreaElement>('#token')!, 'good');
    $<HTMLButtonElement>('#login')!.click();
    await until(() => text('#user') === 'alice');
    expect(sessionStorage.getItem('sluice.token')).toBe('good');
    // Events are forbidden: the rest is still watched.
    await until(() => $('#live')?.getAttribute('data-state') === 'watching');
    expect(requests).toContain('GET /api/v1/pods?watch=1&resourceVersion=100&allowWatchBookmarks=true');
    expect(requests).toContain('GET /api/v1/nodes/n1/proxy/dataplane/flows?follow=true&limit=0');
  });

  it('lists nodes', async () => {
    go('#/nodes');
    await until(() => $('tr[data-node="n1"]'));
    expect(text('tr[data-node="n1"] td.ip')).toBe('10.0.0.1');
    expect(text('tr[data-node="n1"] td.pods')).toBe('2');
  });

  it('lists pods with their status, follows the watch and filters', async () => {
    go('#/pods');
    await until(() => $('tr[data-pod="default/web-a"]'));
    expect(text('tr[data-pod="default/web-a"] td.status')).toBe('CrashLoopBackOff');
    expect(text('tr[data-pod="default/web-a"] td.ready')).toBe('1/2');
    expect(text('#pods-count')).toBe('2 pods');

    watches.get('/api/v1/pods')!.push(
      event('ADDED', {
        metadata: { name: 'web-b', namespace: 'default', resourceVersion: '101', deletionTimestamp: ago(1) },
        spec: { containers: [{ name: 'app' }] },
        status: { phase: 'Running' },
      }),
    );
    await until(() => text('tr[data-pod="default/web-b"] td.status') === 'Terminating');
    expect(text('#pods-count')).toBe('3 pods');

    const ns = $<HTMLSelectElement>('#namespace')!;
    expect($$('#namespace option').map((o) => o.getAttribute('value'))).toEqual(['', 'default', 'kube-system']);
    ns.value = 'kube-system';
    ns.dispatchEvent(new Event('change', { bubbles: true }));
    await until(() => text('#pods-count') === '1 pods');
    ns.value = '';
    ns.dispatchEvent(new Event('change', { bubbles: true }));
    type($<HTMLInputElement>('#pod-filter')!, 'web');
    await until(() => text('#pods-count') === '2 pods');
  });

  it('shows a pod with its logs, and the events error inline', async () => {
    go('#/pods/default/web-a');
    await until(() => text('#pod-logs').includes('line two'));
    expect(logQuery).toContain('container=app');
    expect(logQuery).toContain('tailLines=200');
    expect($('#pod-detail .error')?.textContent).toContain('events is forbidden');
  });

  it('scales and restarts deployments, showing a 403 in the row', async () => {
    go('#/workloads');
    await until(() => $('tr[data-deployment="default/web"]'));
    expect(text('tr[data-deployment="default/web"] td.ready')).toBe('1/2');
    const row = $('tr[data-deployment="default/web"]')!;
    type(row.querySelector<HTMLInputElement>('input.replicas')!, '3');
    row.querySelector<HTMLButtonElement>('button.scale')!.click();
    await until(() => patches.length === 1);
    expect(patches[0]).toEqual({
      path: '/apis/apps/v1/namespaces/default/deployments/web/scale',
      type: 'application/merge-patch+json',
      body: { spec: { replicas: 3 } },
    });
    await until(() => !row.querySelector<HTMLButtonElement>('button.restart')!.disabled);
    expect(text('tr[data-deployment="default/web"] .action-ok')).toBe('scaled to 3');
    row.querySelector<HTMLButtonElement>('button.restart')!.click();
    await until(() => patches.length === 2);
    const restarted = (patches[1].body as any).spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt'];
    expect(restarted).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    $('tr[data-deployment="default/locked"] button.restart')!.dispatchEvent(new Event('click', { bubbles: true }));
    await until(() => text('tr[data-deployment="default/locked"] .action-error').includes('forbidden'));
  });

  it('shows Service endpoints and live traffic from the flows', async () => {
    go('#/services');
    await until(() => text('tr[data-service="default/web"] td.endpoints') === '1');
    expect(text('tr[data-service="default/web"] td.ports')).toBe('80:30080/TCP');

    go('#/services/default/web');
    await until(() => $('#traffic[data-service="default/web"]'));
    expect($$('li.endpoint').length).toBe(2);
    const flow = (backend: string | null, verdict = 'FORWARDED') =>
      `${JSON.stringify({
        verdict,
        reason: verdict === 'FORWARDED' ? '' : 'no_backend',
        source: { ip: '10.1.0.9', port: 4000, pod: { namespace: 'default', name: 'client' } },
        service: { type: 'ClusterIP', namespace: 'default', name: 'web', port: 80 },
        ...(backend ? { backend: { ip: '10.1.0.7', port: 8080, pod: { namespace: 'default', name: backend } } } : {}),
      })}\n`;
    flows.push(flow('web-a') + flow('web-a') + flow('web-b') + flow(null, 'REJECTED'));
    await until(() => text('#traffic-total') === '4');
    expect(text('#traffic-drops')).toBe('1');
    expect(Number(text('#traffic-rate'))).toBeGreaterThan(0);
    expect($('.backend[data-pod="default/web-a"]')?.getAttribute('data-count')).toBe('2');
    expect($('#traffic-chart canvas')).not.toBeNull();

    go('#/map');
    await until(() => $('#service-map g.map-node[data-id="default/web"]'));
    expect($('#service-map g.map-node[data-id="default/client"]')).not.toBeNull();
    expect($$('#service-map .map-edge').length).toBe(3);
  });

  it('signs out', async () => {
    $<HTMLButtonElement>('#logout')!.click();
    await until(() => $('#token'));
    expect(sessionStorage.getItem('sluice.token')).toBeNull();
  });
});
