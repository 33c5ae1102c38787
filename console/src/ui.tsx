import { Alert, Badge, Code, CopyButton, Button, Group, Stack, Tabs } from '@mantine/core';
import type { CombinedError } from 'urql';
import { createContext, useContext } from 'react';

/** What the signed-in caller may do: a reader sees no write buttons. */
export interface Viewer {
  /** Writes models (the role's general write right: keys, projects, members follow it). */
  canWrite: boolean;
  /** Write rights per resource, as the API's `authorize` answers them. */
  can: { files: boolean; vectorStores: boolean; jobs: boolean; clusters: boolean };
  role: string | null;
  projectTitle: string | null;
  /** The signed-in user (their email, or a service account's id). */
  userId: string | null;
}
export const ViewerContext = createContext<Viewer>({
  canWrite: false,
  can: { files: false, vectorStores: false, jobs: false, clusters: false },
  role: null,
  projectTitle: null,
  userId: null,
});
export const useViewer = () => useContext(ViewerContext);

/** An API error as the API says it: the message and its code. */
export function ApiError({ error, title = 'The API refused' }: { error: CombinedError | Error | string | null | undefined; title?: string }) {
  if (!error) return null;
  const lines =
    typeof error === 'string'
      ? [error]
      : 'graphQLErrors' in error && error.graphQLErrors.length > 0
        ? error.graphQLErrors.map((e) => `${e.message}${e.extensions?.['code'] ? ` (${String(e.extensions['code'])})` : ''}`)
        : 'networkError' in error && error.networkError
          ? [error.networkError.message]
          : [error.message];
  return (
    <Alert color="red" title={title} role="alert">
      {lines.map((line) => (
        <div key={line}>{line}</div>
      ))}
    </Alert>
  );
}

const STATUS_COLORS: Record<string, string> = {
  SUCCEEDED: 'green',
  ACTIVE: 'green',
  RUNNING: 'blue',
  LOADING: 'blue',
  REQUESTED: 'gray',
  QUEUED: 'gray',
  INACTIVE: 'gray',
  FAILED: 'red',
  CANCELLED: 'orange',
  COMPLETED: 'green',
  PROCESSED: 'green',
  UPLOADED: 'blue',
  IN_PROGRESS: 'blue',
  ERROR: 'red',
  EXPIRED: 'orange',
};

export function StatusBadge({ status }: { status: string }) {
  return (
    // Never cut to "SUCCEE…" in a narrow table column: the badge keeps its whole word.
    <Badge color={STATUS_COLORS[status] ?? 'gray'} variant="light" style={{ overflow: 'visible', flexShrink: 0 }} styles={{ label: { overflow: 'visible' } }}>
      {status.toLowerCase()}
    </Badge>
  );
}

/** Code to copy, in tabs (curl, the OpenAI SDKs). */
export function CodeTabs({ samples }: { samples: { label: string; code: string }[] }) {
  return (
    <Tabs defaultValue={samples[0]?.label ?? ''}>
      <Tabs.List>
        {samples.map((s) => (
          <Tabs.Tab key={s.label} value={s.label}>
            {s.label}
          </Tabs.Tab>
        ))}
      </Tabs.List>
      {samples.map((s) => (
        <Tabs.Panel key={s.label} value={s.label} pt="xs">
          <Stack gap={4}>
            <Code block style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>
              {s.code}
            </Code>
            <Group justify="flex-end">
              <Copy value={s.code} label={`Copy ${s.label}`} />
            </Group>
          </Stack>
        </Tabs.Panel>
      ))}
    </Tabs>
  );
}

export function Copy({ value, label = 'Copy' }: { value: string; label?: string }) {
  return (
    <CopyButton value={value}>
      {({ copied, copy }) => (
        <Button size="xs" variant="light" color={copied ? 'teal' : 'blue'} onClick={copy} aria-label={label}>
          {copied ? 'Copied' : label}
        </Button>
      )}
    </CopyButton>
  );
}

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}
