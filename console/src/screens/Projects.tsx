import { Badge, Button, Card, Group, Loader, Select, Stack, Table, TextInput, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { CreateProjectDocument, ProjectsDocument } from '../generated/graphql';
import { ApiError, useViewer, when } from '../ui';

/** Organizations and their projects; create a project. */
export function Projects() {
  const viewer = useViewer();
  const [orgs, refetch] = useQuery({ query: ProjectsDocument });
  const [creation, create] = useMutation(CreateProjectDocument);
  const [title, setTitle] = useState('');
  const [organizationId, setOrganizationId] = useState<string | null>(null);
  const items = orgs.data?.organizations.items ?? [];
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const org = organizationId ?? items[0]?.id;
    if (!org) return;
    const result = await create({ input: { organizationId: org, title: title.trim() } });
    if (!result.error) {
      setTitle('');
      refetch({ requestPolicy: 'network-only' });
    }
  };
  return (
    <Stack>
      <Title order={2}>Organizations and projects</Title>
      <ApiError error={orgs.error ?? creation.error} />
      {viewer.canWrite && items.length > 0 && (
        <form onSubmit={submit} aria-label="Create a project">
          <Group align="flex-end" wrap="wrap">
            <Select
              label="Organization"
              data={items.map((o) => ({ value: o.id, label: o.title }))}
              value={organizationId ?? items[0]?.id ?? null}
              onChange={setOrganizationId}
              allowDeselect={false}
            />
            <TextInput label="New project's title" value={title} onChange={(e) => setTitle(e.currentTarget.value)} required />
            <Button type="submit" loading={creation.fetching} disabled={!title.trim()}>
              Create project
            </Button>
          </Group>
        </form>
      )}
      {orgs.fetching && !orgs.data && <Loader aria-label="Loading projects" />}
      {items.map((org) => (
        <Card key={org.id} withBorder>
          <Stack gap="xs">
            <Group gap="xs">
              <Title order={4}>{org.title}</Title>
              {org.isDefault && <Badge variant="light">default</Badge>}
            </Group>
            <Table.ScrollContainer minWidth={360}>
              <Table aria-label={`Projects of ${org.title}`}>
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>Project</Table.Th>
                    <Table.Th>Id</Table.Th>
                    <Table.Th>Created</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {org.projects.items.map((p) => (
                    <Table.Tr key={p.id}>
                      <Table.Td>
                        {p.title} {p.isDefault && <Badge variant="light">default</Badge>}
                      </Table.Td>
                      <Table.Td>{p.id}</Table.Td>
                      <Table.Td>{when(p.createdAt)}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          </Stack>
        </Card>
      ))}
    </Stack>
  );
}
