import { Badge, Button, Card, Group, Loader, Modal, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import {
  AddOrganizationMemberDocument,
  AddProjectMemberDocument,
  MembersDocument,
  RemoveOrganizationMemberDocument,
  RemoveProjectMemberDocument,
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
import type { CombinedError } from 'urql';
import { ApiError, useViewer, when } from '../ui';

type Member = Omit<MembersQuery['organizations']['items'][number]['members']['items'][number], 'role'> & { role: string };

/** A removal waiting for its confirmation: whom, from where, and what removing them takes with it. */
interface Removal {
  userId: string;
  target: string;
  consequence: string;
  remove: () => Promise<{ error?: CombinedError | undefined }>;
}

function MemberTable({
  label,
  members,
  self,
  onRemove,
}: {
  label: string;
  members: Member[];
  self: string | null;
  onRemove?: ((userId: string) => void) | undefined;
}) {
  if (members.length === 0) return <Text size="sm">No members.</Text>;
  return (
    <Table.ScrollContainer minWidth={420}>
      <Table aria-label={label} striped>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>User</Table.Th>
            <Table.Th>Role</Table.Th>
            <Table.Th>Since</Table.Th>
            {onRemove && <Table.Th>Actions</Table.Th>}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {members.map((m) => (
            <Table.Tr key={m.user.id}>
              <Table.Td>
                {m.user.id}
                {m.user.id === self && (
                  <Text span size="sm" c="dimmed">
                    {' '}
                    (you)
                  </Text>
                )}
                {m.user.isServiceAccount && (
                  <Badge variant="outline" size="sm" ml={6}>
                    service account
                  </Badge>
                )}
              </Table.Td>
              <Table.Td>{m.role.toLowerCase()}</Table.Td>
              <Table.Td>{when(m.createdAt)}</Table.Td>
              {onRemove && (
                <Table.Td>
                  <Button size="xs" variant="subtle" color="red" aria-label={`Remove ${m.user.id}`} onClick={() => onRemove(m.user.id)}>
                    Remove
                  </Button>
                </Table.Td>
              )}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

/** Asks before removing; a refusal (the last owner, a missing right) is shown as the API says it and the dialog stays. */
function ConfirmRemoval({ removal, self, onClose, onRemoved }: { removal: Removal | null; self: string | null; onClose: () => void; onRemoved: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<CombinedError | null>(null);
  const close = () => {
    setError(null);
    onClose();
  };
  const confirm = async () => {
    if (!removal) return;
    setBusy(true);
    setError(null);
    const result = await removal.remove();
    setBusy(false);
    if (result.error) return setError(result.error);
    onRemoved();
    close();
  };
  return (
    <Modal opened={removal !== null} onClose={close} title="Remove a member" centered>
      {removal && (
        <Stack>
          <Text>
            Remove <b>{removal.userId}</b> from {removal.target}? {removal.consequence}
          </Text>
          {removal.userId === self && <Text c="orange">This is you: you lose what this membership lets you do.</Text>}
          <ApiError error={error} title="Not removed" />
          <Group justify="flex-end">
            <Button variant="default" onClick={close}>
              Keep
            </Button>
            <Button color="red" loading={busy} onClick={() => void confirm()}>
              Remove
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}

/**
 * Members of the caller's organizations and of their projects; an owner adds a person to an organization
 * (by email, creating the user if new), then to its projects, and removes them (asked first).
 */
export function Members() {
  const viewer = useViewer();
  const [orgs, refetch] = useQuery({ query: MembersDocument });
  const [orgAddition, addToOrganization] = useMutation(AddOrganizationMemberDocument);
  const [addition, addToProject] = useMutation(AddProjectMemberDocument);
  const [, removeFromOrganization] = useMutation(RemoveOrganizationMemberDocument);
  const [, removeFromProject] = useMutation(RemoveProjectMemberDocument);
  const [removal, setRemoval] = useState<Removal | null>(null);
  const added = (error: unknown) => {
    if (!error) refetch({ requestPolicy: 'network-only' });
    return !error;
  };
  return (
    <Stack>
      <Title order={2}>Members</Title>
      <ConfirmRemoval removal={removal} self={viewer.userId} onClose={() => setRemoval(null)} onRemoved={() => refetch({ requestPolicy: 'network-only' })} />
      <ApiError error={orgs.error ?? orgAddition.error ?? addition.error} />
      {orgs.fetching && !orgs.data && <Loader aria-label="Loading members" />}
      {orgs.data?.organizations.items.map((org) => (
        <Card key={org.id} withBorder>
          <Stack>
            <Title order={3}>{org.title}</Title>
            <MemberTable
              label={`Members of ${org.title}`}
              members={org.members.items}
              self={viewer.userId}
              onRemove={
                viewer.canWrite
                  ? (userId) =>
                      setRemoval({
                        userId,
                        target: org.title,
                        consequence: `They leave its projects too, and their API keys in ${org.title} stop working.`,
                        remove: () => removeFromOrganization({ organizationId: org.id, userId }),
                      })
                  : undefined
              }
            />
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
                <MemberTable
                  label={`Members of project ${project.title}`}
                  members={project.members.items}
                  self={viewer.userId}
                  onRemove={
                    viewer.canWrite
                      ? (userId) =>
                          setRemoval({
                            userId,
                            target: `project ${project.title}`,
                            consequence: `They stay in ${org.title}; their API keys for this project stop working.`,
                            remove: () => removeFromProject({ projectId: project.id, userId }),
                          })
                      : undefined
                  }
                />
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
