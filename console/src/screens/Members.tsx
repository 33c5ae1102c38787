import { Badge, Button, Card, Group, Loader, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { AddProjectMemberDocument, MembersDocument, type MembersQuery, type ProjectRole } from '../generated/graphql';

const PROJECT_ROLES: ProjectRole[] = ['MEMBER', 'OWNER'];
import { ApiError, useViewer, when } from '../ui';

type Member = Omit<MembersQuery['organizations']['items'][number]['members']['items'][number], 'role'> & { role: string };

function MemberTable({ label, members }: { label: string; members: Member[] }) {
  if (members.length === 0) return <Text size="sm">No members.</Text>;
  return (
    <Table.ScrollContainer minWidth={420}>
      <Table aria-label={label} striped>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>User</Table.Th>
            <Table.Th>Role</Table.Th>
            <Table.Th>Since</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {members.map((m) => (
            <Table.Tr key={m.user.id}>
              <Table.Td>
                {m.user.id}
                {m.user.isServiceAccount && (
                  <Badge variant="outline" size="sm" ml={6}>
                    service account
                  </Badge>
                )}
              </Table.Td>
              <Table.Td>{m.role.toLowerCase()}</Table.Td>
              <Table.Td>{when(m.createdAt)}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

/** Members of the caller's organizations and of their projects; an owner adds a person to a project. */
export function Members() {
  const viewer = useViewer();
  const [orgs, refetch] = useQuery({ query: MembersDocument });
  const [addition, add] = useMutation(AddProjectMemberDocument);
  const [forms, setForms] = useState<Record<string, { email: string; role: ProjectRole }>>({});
  const submit = async (event: FormEvent, projectId: string) => {
    event.preventDefault();
    const form = forms[projectId];
    if (!form?.email.trim()) return;
    const result = await add({ projectId, userId: form.email.trim().toLowerCase(), role: form.role });
    if (!result.error) {
      setForms({ ...forms, [projectId]: { email: '', role: form.role } });
      refetch({ requestPolicy: 'network-only' });
    }
  };
  return (
    <Stack>
      <Title order={2}>Members</Title>
      <ApiError error={orgs.error ?? addition.error} />
      {orgs.fetching && !orgs.data && <Loader aria-label="Loading members" />}
      {orgs.data?.organizations.items.map((org) => (
        <Card key={org.id} withBorder>
          <Stack>
            <Title order={3}>{org.title}</Title>
            <MemberTable label={`Members of ${org.title}`} members={org.members.items} />
            {org.projects.items.map((project) => {
              const form = forms[project.id] ?? { email: '', role: 'MEMBER' };
              return (
                <Stack key={project.id} gap="xs" pl="md">
                  <Title order={4}>Project {project.title}</Title>
                  <MemberTable label={`Members of project ${project.title}`} members={project.members.items} />
                  {viewer.canWrite && (
                    <form onSubmit={(e) => void submit(e, project.id)} aria-label={`Add a member to ${project.title}`}>
                      <Group align="flex-end" wrap="wrap">
                        <TextInput
                          label="Email"
                          type="email"
                          value={form.email}
                          onChange={(e) => setForms({ ...forms, [project.id]: { ...form, email: e.currentTarget.value } })}
                          w={260}
                        />
                        <Select
                          label="Role"
                          data={PROJECT_ROLES.map((r) => ({ value: r, label: r.toLowerCase() }))}
                          value={form.role}
                          onChange={(role) => setForms({ ...forms, [project.id]: { ...form, role: (role as ProjectRole) ?? 'MEMBER' } })}
                          allowDeselect={false}
                          w={140}
                        />
                        <Button type="submit" disabled={!form.email.trim()} loading={addition.fetching}>
                          Add member
                        </Button>
                      </Group>
                    </form>
                  )}
                </Stack>
              );
            })}
          </Stack>
        </Card>
      ))}
    </Stack>
  );
}
