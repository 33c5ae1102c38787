import {
  ActionIcon,
  AppShell,
  Burger,
  Button,
  Center,
  Group,
  Loader,
  NavLink,
  Stack,
  Text,
  Title,
  useComputedColorScheme,
  useMantineColorScheme,
} from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Provider, useQuery } from 'urql';
import type { Client as WsClient } from 'graphql-ws';
import { createConsoleClient, refreshSession, signInOptions, signOut, unauthenticated, type SessionInfo } from './client';
import { ViewerDocument } from './generated/graphql';
import { Models } from './screens/Models';
import { SignIn } from './screens/SignIn';
import { ApiError, ViewerContext } from './ui';

// Every screen but the first (models) is its own chunk, loaded when opened: the first screen stays small.
const BatchJobPage = lazy(() => import('./screens/BatchJobs').then((m) => ({ default: m.BatchJobPage })));
const BatchJobs = lazy(() => import('./screens/BatchJobs').then((m) => ({ default: m.BatchJobs })));
const Notebooks = lazy(() => import('./screens/Notebooks').then((m) => ({ default: m.Notebooks })));
const ApiKeys = lazy(() => import('./screens/ApiKeys').then((m) => ({ default: m.ApiKeys })));
const Clusters = lazy(() => import('./screens/Clusters').then((m) => ({ default: m.Clusters })));
const Files = lazy(() => import('./screens/Files').then((m) => ({ default: m.Files })));
const JobPage = lazy(() => import('./screens/Jobs').then((m) => ({ default: m.JobPage })));
const Jobs = lazy(() => import('./screens/Jobs').then((m) => ({ default: m.Jobs })));
const Members = lazy(() => import('./screens/Members').then((m) => ({ default: m.Members })));
const Playground = lazy(() => import('./screens/Playground').then((m) => ({ default: m.Playground })));
const Projects = lazy(() => import('./screens/Projects').then((m) => ({ default: m.Projects })));
const Scaling = lazy(() => import('./screens/Scaling').then((m) => ({ default: m.Scaling })));
const Usage = lazy(() => import('./screens/Usage').then((m) => ({ default: m.Usage })));
const VectorStores = lazy(() => import('./screens/VectorStores').then((m) => ({ default: m.VectorStores })));

const SCREENS = [
  { path: 'models', label: 'Models' },
  { path: 'playground', label: 'Playground' },
  { path: 'jobs', label: 'Fine-tuning jobs' },
  { path: 'batch-jobs', label: 'Batch jobs' },
  { path: 'notebooks', label: 'Notebooks' },
  { path: 'files', label: 'Files' },
  { path: 'vector-stores', label: 'Vector stores' },
  { path: 'clusters', label: 'Clusters' },
  { path: 'usage', label: 'Usage' },
  { path: 'keys', label: 'API keys' },
  { path: 'projects', label: 'Projects' },
  { path: 'members', label: 'Members' },
] as const;
/** Pages reached from a screen, highlighted as that screen in the menu. */
const PAGES: Record<string, string> = { scaling: 'models' };

/** The route is the URL's hash (#/models, #/jobs/<id>): the gateway serves one page. */
function useRoute(): string[] {
  const read = () => window.location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

/** When to renew a credential that ends at `end`: a minute before, or a quarter of what is left when that is less. */
function renewalDelay(end: string): number {
  const left = Date.parse(end) - Date.now();
  return Math.max(0, left - Math.min(60_000, left / 4));
}

/**
 * Keeps a signed-in session going: an OIDC session's ID token is renewed before it expires (the WebSocket then
 * reconnects with it, its subscriptions resuming); a session that cannot be renewed is checked when it ends.
 */
function useSessionRenewal(active: boolean, ws: WsClient, onLost: () => void, onExpired: () => void): void {
  useEffect(() => {
    if (!active) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const schedule = (info: SessionInfo) => {
      if (stopped) return;
      if (info.refreshable && info.credentialExpiresAt) timer = setTimeout(() => void renew(), renewalDelay(info.credentialExpiresAt));
      else timer = setTimeout(onLost, Math.max(0, Date.parse(info.credentialExpiresAt ?? info.expiresAt) - Date.now()));
    };
    const renew = async () => {
      const answer = await refreshSession();
      if (stopped) return;
      if (answer === 'expired') return onExpired();
      if (answer === 'unavailable') return void (timer = setTimeout(() => void renew(), 10_000));
      // The open WebSocket authenticated with the old token: a new one carries the renewed cookie.
      ws.terminate();
      schedule(answer);
    };
    void signInOptions().then((options) => options.session && schedule(options.session));
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [active, ws, onLost, onExpired]);
}

/**
 * One signed-in session: a GraphQL client of its own, dropped (WebSocket closed) at sign-out. When the API stops
 * taking the session, it is renewed if it can be (a new client, the same page) or the sign-in says it expired,
 * and the page stays in the URL for after.
 */
export function App() {
  const [session, setSession] = useState(0);
  const [expired, setExpired] = useState(false);
  const [active, setActive] = useState(false);
  const signedIn = useRef(false);
  const checking = useRef(false);
  /** When a lost session was last renewed: lost again at once, the renewal did not help, and it ends. */
  const renewedAt = useRef(0);
  const expire = useCallback(() => {
    signedIn.current = false;
    setActive(false);
    setExpired(true);
    setSession((n) => n + 1);
  }, []);
  const lost = useCallback(() => {
    if (!signedIn.current || checking.current) return;
    checking.current = true;
    void refreshSession().then((answer) => {
      checking.current = false;
      if (answer === 'expired' || (answer !== 'unavailable' && Date.now() - renewedAt.current < 10_000)) expire();
      else if (answer === 'unavailable') setTimeout(lost, 10_000);
      else {
        renewedAt.current = Date.now();
        setSession((n) => n + 1);
      }
    });
  }, [expire]);
  const { client, ws } = useMemo(() => createConsoleClient(lost), [session, lost]);
  useEffect(() => () => void ws.dispose(), [ws]);
  useSessionRenewal(active, ws, lost, expire);
  const onViewer = useCallback((signed: boolean) => {
    signedIn.current = signed;
    setActive(signed);
    if (signed) setExpired(false);
  }, []);
  return (
    <Provider value={client}>
      <Signed key={session} expired={expired} onViewer={onViewer} onChange={() => setSession((n) => n + 1)} />
    </Provider>
  );
}

function Signed({ expired, onViewer, onChange }: { expired: boolean; onViewer: (signedIn: boolean) => void; onChange: () => void }) {
  const [viewer] = useQuery({ query: ViewerDocument, requestPolicy: 'network-only' });
  const signed = !!viewer.data && !unauthenticated(viewer.error);
  useEffect(() => {
    if (!viewer.fetching || viewer.data) onViewer(signed);
  }, [signed, viewer.fetching, viewer.data, onViewer]);
  if (viewer.fetching && !viewer.data) {
    return (
      <Center mih="100vh">
        <Loader aria-label="Loading" />
      </Center>
    );
  }
  if (!signed || !viewer.data) {
    if (viewer.error && !unauthenticated(viewer.error))
      return (
        <Center mih="100vh" p="md">
          <Stack>
            <ApiError error={viewer.error} title="The platform did not answer" />
            <Button onClick={onChange}>Try again</Button>
          </Stack>
        </Center>
      );
    return <SignIn expired={expired} onSignedIn={onChange} />;
  }
  const write = viewer.data.modelWrite;
  return (
    <ViewerContext.Provider
      value={{
        canWrite: write.authorized,
        can: {
          files: viewer.data.filesWrite.authorized,
          vectorStores: viewer.data.vectorStoresWrite.authorized,
          jobs: viewer.data.jobsWrite.authorized,
          clusters: viewer.data.clustersWrite.authorized,
        },
        role: write.role,
        projectTitle: write.project?.title ?? null,
        userId: viewer.data.self?.id ?? null,
      }}
    >
      <Shell
        onSignOut={async () => {
          onViewer(false);
          await signOut();
          onChange();
        }}
      />
    </ViewerContext.Provider>
  );
}

function Shell({ onSignOut }: { onSignOut: () => Promise<void> }) {
  const route = useRoute();
  const [opened, { toggle, close }] = useDisclosure();
  const { setColorScheme } = useMantineColorScheme();
  const scheme = useComputedColorScheme('light');
  const [screen, id] = route;
  const current = SCREENS.find((s) => s.path === screen)?.path ?? PAGES[screen ?? ''] ?? 'models';
  useEffect(() => {
    close();
  }, [screen, id, close]);
  return (
    <ViewerContext.Consumer>
      {(viewer) => (
        <AppShell header={{ height: 56 }} navbar={{ width: 220, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="md">
          <AppShell.Header>
            <Group h="100%" px="md" justify="space-between" wrap="nowrap">
              <Group gap="sm" wrap="nowrap">
                <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Menu" />
                <Title order={4}>Mariner</Title>
                <Text size="sm" c="dimmed" visibleFrom="xs" truncate>
                  {viewer.projectTitle ?? ''} {viewer.role ? `· ${viewer.role.replace(/([A-Z])/g, ' $1').toLowerCase()}` : ''}
                  {!viewer.canWrite ? ' · read only' : ''}
                </Text>
              </Group>
              <Group gap="xs" wrap="nowrap">
                <ActionIcon
                  variant="default"
                  size="lg"
                  onClick={() => setColorScheme(scheme === 'dark' ? 'light' : 'dark')}
                  aria-label={`Switch to ${scheme === 'dark' ? 'light' : 'dark'} mode`}
                >
                  {scheme === 'dark' ? '☀' : '☾'}
                </ActionIcon>
                <Button variant="default" size="sm" onClick={() => void onSignOut()}>
                  Sign out
                </Button>
              </Group>
            </Group>
          </AppShell.Header>
          <AppShell.Navbar p="xs" aria-label="Screens">
            {SCREENS.map((s) => (
              <NavLink key={s.path} href={`#/${s.path}`} label={s.label} active={current === s.path} aria-current={current === s.path ? 'page' : undefined} />
            ))}
          </AppShell.Navbar>
          <AppShell.Main>
            <Suspense
              fallback={
                <Center mih={200}>
                  <Loader aria-label="Loading the screen" />
                </Center>
              }
            >
              {screen === 'scaling' && id ? (
                <Scaling modelId={decodeURIComponent(id)} />
              ) : (
                <>
                  {current === 'models' && <Models />}
                  {current === 'playground' && <Playground />}
                  {current === 'jobs' && (id ? <JobPage id={id} /> : <Jobs />)}
                  {current === 'batch-jobs' && (id ? <BatchJobPage id={id} /> : <BatchJobs />)}
                  {current === 'notebooks' && <Notebooks />}
                  {current === 'files' && <Files />}
                  {current === 'vector-stores' && <VectorStores />}
                  {current === 'clusters' && <Clusters />}
                  {current === 'usage' && <Usage />}
                  {current === 'keys' && <ApiKeys />}
                  {current === 'projects' && <Projects />}
                  {current === 'members' && <Members />}
                </>
              )}
            </Suspense>
          </AppShell.Main>
        </AppShell>
      )}
    </ViewerContext.Consumer>
  );
}
