import { Badge, Button, Card, Group, Loader, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import {
  AddOrganizationMemberDocument,
  AddProjectMemberDocument,
  MembersDocument,
  type MembersQuery,
  type OrganizationRole,
  type ProjectRole,
} from '../generated/graphql';

const PROJECT_ROLES: ProjectRole[] = ['MEMBER', 'OWNER'];
const ORGANIZATION_ROLES: OrganizationRole[] = ['READER', 'OWNER'];

/** An email and a role, added with `onAdd`: the form under each organization and project. */
function AddMember<Role extends string>({
  target,
  roles,
  busy,
  onAdd,
}: {
  target: string;
  roles: Role[];
  busy: boolean;
  onAdd: (email: string, role: Role) => Promise<boolean>;
}) {
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<Role>(roles[0]!);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (await onAdd(email.trim().toLowerCase(), role)) setEmail('');
  };
  return (
    <form onSubmit={(e) => void submit(e)} aria-label={`Add a member to ${target}`}>
      <Group align="flex-end" wrap="wrap">
        <TextInput label={`Email (${target})`} type="email" value={email} onChange={(e) => setEmail(e.currentTarget.value)} w={260} />
        <Select
          label="Role"
          data={roles.map((r) => ({ value: r, label: r.toLowerCase() }))}
          value={role}
          onChange={(value) => setRole((value as Role | null) ?? roles[0]!)}
          allowDeselect={false}
          w={140}
        />
        <Button type="submit" disabled={!email.trim()} loading={busy}>
          Add member
        </Button>
      </Group>
    </form>
  );
}
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

/**
 * Members of the caller's organizations and of their projects; an owner adds a person to an organization
 * (by email, creating the user if new), then to its projects.
 */
export function Members() {
  const viewer = useViewer();
  const [orgs, refetch] = useQuery({ query: MembersDocument });
  const [orgAddition, addToOrganization] = useMutation(AddOrganizationMemberDocument);
  const [addition, addToProject] = useMutation(AddProjectMemberDocument);
  const added = (error: unknown) => {
    if (!error) refetch({ requestPolicy: 'network-only' });
    return !error;
  };
  return (
    <Stack>
      <Title order={2}>Members</Title>
      <ApiError error={orgs.error ?? orgAddition.error ?? addition.error} />
      {orgs.fetching && !orgs.data && <Loader aria-label="Loading members" />}
      {orgs.data?.organizations.items.map((org) => (
        <Card key={org.id} withBorder>
          <Stack>
            <Title order={3}>{org.title}</Title>
            <MemberTable label={`Members of ${org.title}`} members={org.members.items} />
            {viewer.canWrite && (
              <AddMember
                target={org.title}
                roles={ORGANIZATION_ROLES}
                busy={orgAddition.fetching}
                onAdd={async (email, role) => added((await addToOrganization({ organizationId: org.id, userId: email, role })).error)}
              />
            )}
            {org.projects.items.map((project) => (
              <Stack key={project.id} gap="xs" pl="md">
                <Title order={4}>Project {project.title}</Title>
                <MemberTable label={`Members of project ${project.title}`} members={project.members.items} />
                {viewer.canWrite && (
                  <AddMember
                    target={`project ${project.title}`}
                    roles={PROJECT_ROLES}
                    busy={addition.fetching}
                    onAdd={async (email, role) => added((await addToProject({ projectId: project.id, userId: email, role })).error)}
                  />
                )}
              </Stack>
            ))}
          </Stack>
        </Card>
      ))}
    </Stack>
  );
}
