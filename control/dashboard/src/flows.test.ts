import { describe, expect, it } from 'vitest';
import { Flow, FlowStats, RateWindow, clientIdOf, parseFlow } from './flows';

const T0 = 1_800_000_000_000; // a whole second, in ms

function flow(over: Partial<Flow> = {}): Flow {
  return {
    verdict: 'FORWARDED',
    source: { ip: '10.0.0.5', port: 41234, pod: { namespace: 'default', name: 'client' } },
    destination: { ip: '10.96.0.10', port: 80 },
    service: { type: 'ClusterIP', namespace: 'default', name: 'web', port: 80 },
    backend: { ip: '10.1.0.7', port: 8080, pod: { namespace: 'default', name: 'web-a' } },
    ...over,
  };
}

describe('RateWindow', () => {
  it('buckets by second and forgets what left the window', () => {
    const w = new RateWindow(60);
    w.add(T0);
    w.add(T0 + 500);
    w.add(T0 + 1000);
    expect(w.series(T0 + 1000, 3).y).toEqual([0, 2, 1]);
    // 60 s later the first second's slot is reused.
    w.add(T0 + 60_000);
    expect(w.at(T0 / 1000)).toBe(0);
    expect(w.at(T0 / 1000 + 60)).toBe(1);
  });

  it('averages over the time the window covers', () => {
    const w = new RateWindow(60);
    for (let s = 0; s < 10; s++) for (let i = 0; i < 4; i++) w.add(T0 + s * 1000 + i);
    // 10 s of 4 flows/s, measured at the end of the 10th second.
    expect(w.rate(T0 + 9999, 5)).toBeCloseTo(4, 1);
    // Counting started 2 s ago: the average is over those 2 s only.
    const fresh = new RateWindow(60);
    for (let s = 8; s < 10; s++) for (let i = 0; i < 4; i++) fresh.add(T0 + s * 1000 + i);
    expect(fresh.rate(T0 + 9999, 5, T0 + 8000)).toBeCloseTo(4, 1);
  });
});

describe('FlowStats', () => {
  it('aggregates per Service: totals, backends, drops and edges', () => {
    const s = new FlowStats(T0);
    s.add(flow(), T0);
    s.add(flow(), T0 + 100);
    s.add(flow({ backend: { ip: '10.1.0.8', port: 8080, pod: { namespace: 'default', name: 'web-b' } } }), T0 + 200);
    s.add(flow({ verdict: 'REJECTED', reason: 'no_backend', backend: undefined, source: { ip: '192.0.2.1', port: 5 } }), T0 + 300);
    s.add(flow({ service: { type: 'External' } }), T0 + 400); // no name: not a Service's

    const web = s.services.get('default/web')!;
    expect(web.total).toBe(4);
    expect(web.drops).toBe(1);
    expect([...web.dropReasons]).toEqual([['no_backend', 1]]);
    expect([...web.backends]).toEqual([
      ['default/web-a', 2],
      ['default/web-b', 1],
    ]);
    expect(s.total).toBe(5);
    expect(s.unattributed).toBe(1);

    const edges = [...s.edges.values()].map((e) => `${e.stage} ${e.from} -> ${e.to} ${e.count}`);
    expect(edges.sort()).toEqual([
      'backend default/web -> default/web-a 2',
      'backend default/web -> default/web-b 1',
      'client default/client -> default/web 3',
      'client external 192.0.2.1 -> default/web 1',
    ]);
    expect(s.rate('default/web', 5, T0 + 999)).toBeCloseTo(4, 5);
  });

  it('parses flow lines and skips others', () => {
    expect(parseFlow(JSON.stringify(flow()))?.service?.name).toBe('web');
    expect(parseFlow('not json')).toBeNull();
    expect(parseFlow('{"hello":1}')).toBeNull();
  });
});

describe('clientIdOf', () => {
  it('names a pod, a node (socket-level balancing) or an outside address', () => {
    expect(clientIdOf(flow())).toBe('default/client');
    expect(clientIdOf(flow({ hook: 'socket', source: { ip: '0.0.0.0', port: 0, node: 'n1' } }))).toBe('node n1');
    expect(clientIdOf(flow({ source: { ip: '192.0.2.9', port: 5000 } }))).toBe('external 192.0.2.9');
  });
});
