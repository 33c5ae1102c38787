import { Alert, Badge, Button, Code, Group, Loader, Modal, Stack, Table, Text, TextInput, Title, Tooltip } from '@mantine/core';
import { useEffect, useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { ClustersDocument, RegisterClusterDocument } from '../generated/graphql';
import { ApiError, Copy, useViewer, when } from '../ui';

/** Worker clusters: status (agent connected, components, GPUs), and registration with the key shown once. */
export function Clusters() {
  const viewer = useViewer();
  const [clusters, refetch] = useQuery({ query: ClustersDocument });
  const [registration, register] = useMutation(RegisterClusterDocument);
  const [name, setName] = useState('');
  const [registered, setRegistered] = useState<{ name: string; key: string } | null>(null);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const result = await register({ input: { name: name.trim() } });
    if (result.data) {
      setRegistered({ name: result.data.registerCluster.cluster.name, key: result.data.registerCluster.registrationKey });
      setName('');
      refetch({ requestPolicy: 'network-only' });
    }
  };
  const items = clusters.data?.clusters.items ?? [];
  const forbidden = clusters.error?.graphQLErrors.some((e) => e.extensions?.['code'] === 'FORBIDDEN') ?? false;
  // Agents connect and report on their own schedule (no subscription carries it): read again while the page is open.
  useEffect(() => {
    const timer = setInterval(() => refetch({ requestPolicy: 'network-only' }), 5000);
    return () => clearInterval(timer);
  }, [refetch]);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Clusters</Title>
        <Button variant="default" size="xs" onClick={() => refetch({ requestPolicy: 'network-only' })}>
          Refresh
        </Button>
      </Group>
      {forbidden ? (
        <Alert color="gray" title="No access to clusters">
          Your role in this organization cannot see its clusters. An organization owner can show you their status, or give you that role.
        </Alert>
      ) : (
        <ApiError error={clusters.error} />
      )}
      <ApiError error={registration.error} />
      {viewer.can.clusters && (
        <form onSubmit={submit} aria-label="Register a cluster">
          <Group align="flex-end" wrap="wrap">
            <TextInput
              label="New cluster's name"
              description="A DNS label: lowercase letters, digits and '-'"
              value={name}
              onChange={(e) => setName(e.currentTarget.value)}
              required
              w={280}
            />
            <Button type="submit" loading={registration.fetching} disabled={!name.trim()}>
              Register cluster
            </Button>
          </Group>
        </form>
      )}
      {clusters.fetching && !clusters.data && <Loader aria-label="Loading clusters" />}
      {clusters.data && items.length === 0 && <Text>No clusters yet.</Text>}
      {items.length > 0 && (
        <Table.ScrollContainer minWidth={640}>
          <Table aria-label="Clusters" striped>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Agent</Table.Th>
                <Table.Th>Components</Table.Th>
                <Table.Th>GPUs (allocated / capacity)</Table.Th>
                <Table.Th>Nodes</Table.Th>
                <Table.Th>Owner</Table.Th>
                <Table.Th>Registered</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((c) => (
                <Table.Tr key={c.id} data-testid={`cluster-${c.name}`}>
                  <Table.Td>
                    {c.name}
                    {c.isDefault && (
                      <Badge variant="outline" ml={6} size="sm">
                        default
                      </Badge>
                    )}
                  </Table.Td>
                  <Table.Td style={{ whiteSpace: 'nowrap' }}>
                    <Badge color={c.connected ? 'green' : 'gray'} variant="light" styles={{ label: { overflow: 'visible' } }}>
                      {c.connected ? 'connected' : 'disconnected'}
                    </Badge>
                  </Table.Td>
                  <Table.Td>
                    <Group gap={4}>
                      {c.componentStatuses.length === 0 && '—'}
                      {c.componentStatuses.map((s) => (
                        <Tooltip key={s.name} label={s.message || (s.isHealthy ? 'healthy' : 'unhealthy')}>
                          <Badge color={s.isHealthy ? 'green' : 'red'} variant="light" size="sm">
                            {s.name}
                          </Badge>
                        </Tooltip>
                      ))}
                    </Group>
                  </Table.Td>
                  <Table.Td>
                    {c.status ? `${c.status.gpuAllocated} / ${c.status.gpuCapacity}` : '—'}
                    {c.status?.stale && (
                      <Badge color="orange" variant="light" ml={4} size="sm">
                        stale
                      </Badge>
                    )}
                  </Table.Td>
                  <Table.Td>{c.status ? c.status.nodes.length : '—'}</Table.Td>
                  <Table.Td>{c.organizationId ? 'organization' : c.sharedWithAllOrganizations ? 'platform (all organizations)' : 'platform'}</Table.Td>
                  <Table.Td>{when(c.createdAt)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Modal opened={registered !== null} onClose={() => setRegistered(null)} title={`Cluster "${registered?.name ?? ''}" registered`} size="lg">
        <Stack>
          <Alert color="yellow">Copy the registration key now: it is shown this once and cannot be shown again.</Alert>
          <Code block data-testid="registration-key" style={{ wordBreak: 'break-all', whiteSpace: 'pre-wrap' }}>
            {registered?.key}
          </Code>
          <Group justify="space-between">
            <Copy value={registered?.key ?? ''} label="Copy registration key" />
            <Button onClick={() => setRegistered(null)}>Done</Button>
          </Group>
          <Text size="sm" c="dimmed">
            Give it to the cluster&apos;s agent: <code>MARINER_REGISTRATION_KEY=… mariner agent --control-plane {window.location.origin}</code> (or the
            chart&apos;s worker values).
          </Text>
        </Stack>
      </Modal>
    </Stack>
  );
}
