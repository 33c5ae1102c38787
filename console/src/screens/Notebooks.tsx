import { Anchor, Button, Card, Group, Loader, NumberInput, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useEffect, useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import {
  CreateNotebookDocument,
  DeleteNotebookDocument,
  NotebooksDocument,
  StartNotebookDocument,
  StopNotebookDocument,
  type NotebooksQuery,
} from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';

type Notebook = NotebooksQuery['notebooks']['items'][number];

/** How often the list is read again while a notebook is changing (no subscription carries notebooks). */
const POLL_MS = 3000;

/**
 * Where a browser opens a running notebook: the platform's notebook proxy (reference §4c, §8), entered through
 * the console's `/console/notebook` hand-off, which lets the proxy sign the browser in with this session
 * (gateway/console.ts); Jupyter's own token logs in to Jupyter.
 */
export function notebookUrl(nb: Notebook): string | null {
  if (nb.status !== 'RUNNING' || !nb.clusterId || !nb.kubernetesNamespace) return null;
  const path = `/v1/sessions/${encodeURIComponent(nb.clusterId)}/v1/services/notebooks/${encodeURIComponent(nb.id)}/${encodeURIComponent(nb.kubernetesNamespace)}/lab?token=${encodeURIComponent(nb.token)}`;
  return `/console/notebook?path=${encodeURIComponent(path)}`;
}

/** Create a notebook (LLMariner POST /v1/workspaces/notebooks): a name, an image preset, GPUs. */
function NewNotebook({ onCreated }: { onCreated: () => void }) {
  const [creation, create] = useMutation(CreateNotebookDocument);
  const [name, setName] = useState('');
  const [image, setImage] = useState<string | null>('jupyter-lab-base');
  const [gpuCount, setGpuCount] = useState<number | string>(0);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!image) return;
    const result = await create({ input: { name: name.trim(), image, resources: { gpuCount: Number(gpuCount) || 0 } } });
    if (result.data) {
      setName('');
      onCreated();
    }
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} aria-label="Create a notebook">
        <Stack gap="xs">
          <Title order={4}>New notebook</Title>
          <Group align="flex-end" wrap="wrap">
            <TextInput
              label="Name"
              description="Lowercase letters, digits, dashes"
              value={name}
              onChange={(e) => setName(e.currentTarget.value)}
              w={220}
              required
            />
            <Select label="Image" data={['jupyter-lab-base', 'jupyter-lab-full']} value={image} onChange={setImage} searchable w={200} required />
            <NumberInput label="GPUs" value={gpuCount} onChange={setGpuCount} min={0} max={64} w={90} />
            <Button type="submit" loading={creation.fetching} disabled={!name.trim() || !image}>
              Create notebook
            </Button>
          </Group>
          <ApiError error={creation.error} />
        </Stack>
      </form>
    </Card>
  );
}

/** The project's Jupyter notebooks: status (read again while one is changing), open, stop, start, delete. */
export function Notebooks() {
  const viewer = useViewer();
  const [notebooks, refetch] = useQuery({ query: NotebooksDocument });
  const [stopping, stop] = useMutation(StopNotebookDocument);
  const [starting, start] = useMutation(StartNotebookDocument);
  const [deletion, remove] = useMutation(DeleteNotebookDocument);
  const items = notebooks.data?.notebooks.items ?? [];
  const changing = items.some((nb) => nb.pendingAction || nb.status === 'QUEUED' || nb.status === 'INITIALIZING');
  const again = () => refetch({ requestPolicy: 'network-only' });
  useEffect(() => {
    if (!changing) return;
    const timer = setInterval(() => refetch({ requestPolicy: 'network-only' }), POLL_MS);
    return () => clearInterval(timer);
  }, [changing, refetch]);
  const act = (nb: Notebook) => {
    if (nb.pendingAction)
      return (
        <Text size="sm" c="dimmed">
          {nb.pendingAction.toLowerCase()}…
        </Text>
      );
    return (
      <Group gap={4} wrap="nowrap">
        {(nb.status === 'RUNNING' || nb.status === 'INITIALIZING' || nb.status === 'QUEUED') && (
          <Button size="xs" variant="subtle" aria-label={`Stop ${nb.name}`} onClick={() => void stop({ id: nb.id }).then(again)}>
            Stop
          </Button>
        )}
        {nb.status === 'STOPPED' && (
          <Button size="xs" variant="subtle" aria-label={`Start ${nb.name}`} onClick={() => void start({ id: nb.id }).then(again)}>
            Start
          </Button>
        )}
        <Button size="xs" variant="subtle" color="red" aria-label={`Delete ${nb.name}`} onClick={() => void remove({ id: nb.id }).then(again)}>
          Delete
        </Button>
      </Group>
    );
  };
  return (
    <Stack>
      <Title order={2}>Notebooks</Title>
      {viewer.can.jobs && <NewNotebook onCreated={again} />}
      <ApiError error={notebooks.error ?? stopping.error ?? starting.error ?? deletion.error} />
      {notebooks.fetching && !notebooks.data && <Loader aria-label="Loading notebooks" />}
      {notebooks.data && items.length === 0 && <Text>No notebooks yet.</Text>}
      {items.length > 0 && (
        <Table.ScrollContainer minWidth={640}>
          <Table aria-label="Notebooks" striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Image</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Created</Table.Th>
                <Table.Th>Open</Table.Th>
                {viewer.can.jobs && <Table.Th>Actions</Table.Th>}
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((nb) => {
                const url = notebookUrl(nb);
                return (
                  <Table.Tr key={nb.id}>
                    <Table.Td>
                      <Text size="sm">{nb.name}</Text>
                      {nb.error && (
                        <Text size="xs" c="red" style={{ whiteSpace: 'pre-wrap' }}>
                          {nb.error.message}
                        </Text>
                      )}
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" style={{ wordBreak: 'break-all' }}>
                        {nb.image}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <StatusBadge status={nb.status} />
                    </Table.Td>
                    <Table.Td>{when(nb.createdAt)}</Table.Td>
                    <Table.Td>
                      {url ? (
                        <Anchor href={url} target="_blank" rel="noopener">
                          Open
                        </Anchor>
                      ) : (
                        <Text size="sm" c="dimmed">
                          not running
                        </Text>
                      )}
                    </Table.Td>
                    {viewer.can.jobs && <Table.Td>{act(nb)}</Table.Td>}
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}
