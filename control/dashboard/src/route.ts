// Hash routes: #/overview, #/pods/{ns}/{name}, ...

export const VIEWS = ['overview', 'nodes', 'workloads', 'pods', 'services', 'map'] as const;
export type ViewName = (typeof VIEWS)[number];

export type Route =
  | { view: ViewName }
  | { view: 'pod'; namespace: string; name: string }
  | { view: 'service'; namespace: string; name: string }
  | { view: 'notfound'; path: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, '');
  let parts: string[];
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { view: 'notfound', path };
  }
  if (parts.length === 0) return { view: 'overview' };
  const [head, ns, name] = parts;
  if (parts.length === 1 && (VIEWS as readonly string[]).includes(head)) return { view: head as ViewName };
  if (parts.length === 3 && head === 'pods') return { view: 'pod', namespace: ns, name };
  if (parts.length === 3 && head === 'services') return { view: 'service', namespace: ns, name };
  return { view: 'notfound', path };
}

/** The nav entry a route belongs to. */
export function navOf(route: Route): ViewName | null {
  if (route.view === 'pod') return 'pods';
  if (route.view === 'service') return 'services';
  if (route.view === 'notfound') return null;
  return route.view;
}
