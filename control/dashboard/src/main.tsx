// The dashboard's entry: sign-in, then the app shell (header, nav,
// namespace filter) around the view of the current hash route.

import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { apiFetch, asApiError, clearToken, getToken, onUnauthorized, proxyFetch, reviewSelf } from './api';
import { Cluster, LiveState } from './cluster';
import { Route, VIEWS, ViewName, navOf, parseRoute } from './route';
import { ViewProps } from './ui';
import { Login } from './views/login';
import { Nodes } from './views/nodes';
import { Overview } from './views/overview';
import { PodDetail } from './views/pod-detail';
import { Pods } from './views/pods';
import { ServiceDetail } from './views/service-detail';
import { ServiceMap } from './views/service-map';
import { Services } from './views/services';
import { Workloads } from './views/workloads';
import './style.css';

const NAV_LABELS: Record<ViewName, string> = {
  overview: 'Overview',
  nodes: 'Nodes',
  workloads: 'Workloads',
  pods: 'Pods',
  services: 'Services',
  map: 'Service map',
};

const LIVE_LABELS: Record<LiveState, string> = {
  watching: 'Live',
  connecting: 'Connecting…',
  error: 'Disconnected',
};

type Auth = { phase: 'checking' } | { phase: 'login'; error: string } | { phase: 'app'; user: string };

function Root() {
  const [auth, setAuth] = useState<Auth>({ phase: 'checking' });

  useEffect(() => {
    // A 401 once signed in: the token expired or was revoked.
    onUnauthorized((e) => {
      clearToken();
      setAuth({ phase: 'login', error: e.message });
    });
    // A stored token, or none (a client certificate may still identify the user).
    const token = getToken();
    reviewSelf(token)
      .then((user) => {
        if (!token && (!user || user === 'system:anonymous')) setAuth({ phase: 'login', error: '' });
        else setAuth({ phase: 'app', user: user || 'unknown' });
      })
      .catch((e) => {
        const err = asApiError(e);
        if (err.code === 401) {
          // A stored token that no longer works is forgotten; no token is no error.
          if (token) clearToken();
          setAuth({ phase: 'login', error: token ? err.message : '' });
        } else if (err.code === 403 && token) {
          // Authenticated, just not allowed to ask who: go on.
          setAuth({ phase: 'app', user: 'unknown' });
        } else {
          setAuth({ phase: 'login', error: err.message });
        }
      });
  }, []);

  if (auth.phase === 'checking') return <p class="muted center">Connecting to the API server…</p>;
  if (auth.phase === 'login') {
    return <Login error={auth.error} onSignedIn={(user) => setAuth({ phase: 'app', user })} />;
  }
  return (
    <App
      user={auth.user}
      onLogout={() => {
        clearToken();
        setAuth({ phase: 'login', error: '' });
      }}
    />
  );
}

function useHashRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
}

function App({ user, onLogout }: { user: string; onLogout: () => void }) {
  const cluster = useMemo(() => new Cluster(apiFetch, proxyFetch), []);
  const [, setVersion] = useState(0);
  const route = useHashRoute();
  const [namespace, setNamespace] = useState('');

  useEffect(() => {
    const rerender = () => setVersion((v) => v + 1);
    const unsubscribe = cluster.subscribe(rerender);
    cluster.start();
    // A 1-s clock: ages, rates and the traffic chart move with time (no server polling).
    const clock = setInterval(rerender, 1000);
    return () => {
      clearInterval(clock);
      unsubscribe();
      cluster.stop();
    };
  }, [cluster]);

  const live = cluster.live();
  const failing = cluster.informers.filter((i) => i.error).map((i) => `${i.url}: ${i.error?.message}`);
  const props: ViewProps = { cluster, namespace, now: Date.now() };
  const active = navOf(route);

  return (
    <div class="layout">
      <header class="top">
        <a class="brand" href="#/overview">
          Sluice
        </a>
        <label class="ns-filter">
          <span class="muted">Namespace</span>
          <select id="namespace" value={namespace} onChange={(e) => setNamespace((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">All namespaces</option>
            {namespaceNames(cluster, namespace).map((ns) => (
              <option key={ns} value={ns}>
                {ns}
              </option>
            ))}
          </select>
        </label>
        <span class="spacer" />
        <span id="live" data-state={live} title={failing.join('\n') || LIVE_LABELS[live]}>
          <span class="dot" /> {LIVE_LABELS[live]}
        </span>
        <span id="user" title="Signed in as">
          {user}
        </span>
        <button id="logout" type="button" onClick={onLogout}>
          Sign out
        </button>
      </header>
      <nav class="side">
        {VIEWS.map((v) => (
          <a key={v} href={`#/${v}`} data-view={v} class={v === active ? 'active' : ''}>
            {NAV_LABELS[v]}
          </a>
        ))}
      </nav>
      <main class="content">{viewOf(route, props)}</main>
    </div>
  );
}

function viewOf(route: Route, props: ViewProps) {
  switch (route.view) {
    case 'overview':
      return <Overview {...props} />;
    case 'nodes':
      return <Nodes {...props} />;
    case 'workloads':
      return <Workloads {...props} />;
    case 'pods':
      return <Pods {...props} />;
    case 'pod':
      return (
        <PodDetail
          key={`${route.namespace}/${route.name}`}
          {...props}
          podNamespace={route.namespace}
          podName={route.name}
        />
      );
    case 'services':
      return <Services {...props} />;
    case 'service':
      return (
        <ServiceDetail
          key={`${route.namespace}/${route.name}`}
          {...props}
          serviceNamespace={route.namespace}
          serviceName={route.name}
        />
      );
    case 'map':
      return <ServiceMap {...props} />;
    case 'notfound':
      return (
        <section>
          <h1>Not found</h1>
          <p>
            No view at <code>#/{route.path}</code>. <a href="#/overview">Overview</a>
          </p>
        </section>
      );
  }
}

/**
 * The namespace filter's choices: the namespaces watched; when they cannot
 * be listed, those seen on pods, services and deployments instead. The
 * current choice stays listed even if its namespace is gone.
 */
function namespaceNames(cluster: Cluster, selected: string): string[] {
  const names = new Set(cluster.namespaces.items.keys());
  if (cluster.namespaces.error && names.size === 0) {
    for (const inf of [cluster.pods, cluster.services, cluster.deployments]) {
      for (const o of inf.items.values()) if (o.metadata.namespace) names.add(o.metadata.namespace);
    }
  }
  if (selected) names.add(selected);
  return [...names].sort();
}

render(<Root />, document.getElementById('app')!);
