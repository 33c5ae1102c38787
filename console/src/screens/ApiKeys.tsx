import { Alert, Button, Code, Group, Loader, Modal, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { ApiKeysDocument, CreateApiKeyDocument, DeleteApiKeyDocument } from '../generated/graphql';
import { ApiError, Copy, useViewer, when } from '../ui';

/** The caller's API keys in this project: create (the secret shown once), list, delete. */
export function ApiKeys() {
  const viewer = useViewer();
  const [keys, refetch] = useQuery({ query: ApiKeysDocument });
  const [creation, create] = useMutation(CreateApiKeyDocument);
  const [deletion, remove] = useMutation(DeleteApiKeyDocument);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const result = await create({ input: { name: name.trim() } });
    if (result.data) {
      setCreated({ name: result.data.createApiKey.apiKey.name, secret: result.data.createApiKey.secret });
      setName('');
      refetch({ requestPolicy: 'network-only' });
    }
  };
  const onDelete = async (id: string, keyName: string) => {
    if (!window.confirm(`Delete the API key "${keyName}"? Clients using it stop working at once.`)) return;
    const result = await remove({ id });
    if (!result.error) refetch({ requestPolicy: 'network-only' });
  };
  return (
    <Stack>
      <Title order={2}>API keys</Title>
      <ApiError error={keys.error ?? creation.error ?? deletion.error} />
      {viewer.canWrite && (
        <form onSubmit={submit} aria-label="Create an API key">
          <Group align="flex-end" wrap="wrap">
            <TextInput label="New key's name" value={name} onChange={(e) => setName(e.currentTarget.value)} required maw={320} />
            <Button type="submit" loading={creation.fetching} disabled={!name.trim()}>
              Create key
            </Button>
          </Group>
        </form>
      )}
      {keys.fetching && !keys.data && <Loader aria-label="Loading API keys" />}
      {keys.data && (
        <Table.ScrollContainer minWidth={520}>
          <Table aria-label="API keys" striped>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Key</Table.Th>
                <Table.Th>Project</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th>Created</Table.Th>
                {viewer.canWrite && <Table.Th aria-label="Actions" />}
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {keys.data.apiKeys.items.map((key) => (
                <Table.Tr key={key.id}>
                  <Table.Td>{key.name}</Table.Td>
                  <Table.Td>
                    <Code style={{ whiteSpace: 'nowrap' }}>{key.secret}</Code>
                  </Table.Td>
                  <Table.Td>{key.project.title}</Table.Td>
                  <Table.Td>{(key.organizationRole ?? key.projectRole ?? '—').toLowerCase()}</Table.Td>
                  <Table.Td>{when(key.createdAt)}</Table.Td>
                  {viewer.canWrite && (
                    <Table.Td>
                      <Button size="xs" variant="subtle" color="red" onClick={() => void onDelete(key.id, key.name)} aria-label={`Delete key ${key.name}`}>
                        Delete
                      </Button>
                    </Table.Td>
                  )}
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Modal opened={created !== null} onClose={() => setCreated(null)} title={`API key "${created?.name ?? ''}" created`} size="lg">
        <Stack>
          <Alert color="yellow">Copy it now: it is shown this once and cannot be shown again.</Alert>
          <Code block data-testid="new-api-key" style={{ wordBreak: 'break-all', whiteSpace: 'pre-wrap' }}>
            {created?.secret}
          </Code>
          <Group justify="space-between">
            <Copy value={created?.secret ?? ''} label="Copy key" />
            <Button onClick={() => setCreated(null)}>Done</Button>
          </Group>
          <Text size="sm" c="dimmed">
            Use it as <code>Authorization: Bearer …</code> or as the OpenAI SDK&apos;s <code>api_key</code>.
          </Text>
        </Stack>
      </Modal>
    </Stack>
  );
}
