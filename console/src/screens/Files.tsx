import { Button, Checkbox, FileInput, Group, Loader, Progress, Select, Stack, Table, Text, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import { uploadFile } from '../client';
import { DeleteFileDocument, FilesDocument } from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';

const PURPOSES = ['fine-tune', 'assistants', 'batch', 'user_data'];

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * The project's files: upload (the bytes go to `POST /v1/files`, as the OpenAI SDK sends them: files never
 * pass through GraphQL), with a progress bar; list and delete through GraphQL. Selecting files offers to
 * build a vector store from them.
 */
export function Files({ onSelect }: { onSelect?: (ids: string[]) => void }) {
  const viewer = useViewer();
  const [files, refetch] = useQuery({ query: FilesDocument, variables: {} });
  const [deletion, remove] = useMutation(DeleteFileDocument);
  const [file, setFile] = useState<File | null>(null);
  const [purpose, setPurpose] = useState<string | null>('fine-tune');
  const [progress, setProgress] = useState<number | null>(null);
  const [uploadError, setUploadError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string[]>([]);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!file || !purpose) return;
    setUploadError(null);
    setProgress(0);
    try {
      await uploadFile(file, purpose, setProgress);
      setFile(null);
      refetch({ requestPolicy: 'network-only' });
    } catch (err) {
      setUploadError((err as Error).message);
    } finally {
      setProgress(null);
    }
  };
  const onDelete = async (id: string, name: string) => {
    if (!window.confirm(`Delete the file "${name}"?`)) return;
    const result = await remove({ id });
    if (!result.error) refetch({ requestPolicy: 'network-only' });
  };
  const toggle = (id: string) => {
    const next = selected.includes(id) ? selected.filter((s) => s !== id) : [...selected, id];
    setSelected(next);
    onSelect?.(next);
  };
  const items = files.data?.files.items ?? [];
  return (
    <Stack>
      <Title order={2}>Files</Title>
      <ApiError error={files.error ?? deletion.error} />
      {viewer.can.files && (
        <form onSubmit={submit} aria-label="Upload a file">
          <Group align="flex-end" wrap="wrap">
            <FileInput label="File" placeholder="Choose a file" value={file} onChange={setFile} clearable w={280} />
            <Select label="Purpose" data={PURPOSES} value={purpose} onChange={setPurpose} allowDeselect={false} w={160} />
            <Button type="submit" disabled={!file || progress !== null} loading={progress !== null}>
              Upload
            </Button>
          </Group>
        </form>
      )}
      {progress !== null && <Progress value={progress} aria-label="Upload progress" animated />}
      <ApiError error={uploadError} title="Upload failed" />
      {files.fetching && !files.data && <Loader aria-label="Loading files" />}
      {files.data && items.length === 0 && <Text>No files yet.</Text>}
      {items.length > 0 && (
        <Table.ScrollContainer minWidth={560}>
          <Table aria-label="Files" striped>
            <Table.Thead>
              <Table.Tr>
                {onSelect && <Table.Th aria-label="Select" />}
                <Table.Th>Name</Table.Th>
                <Table.Th>Id</Table.Th>
                <Table.Th>Purpose</Table.Th>
                <Table.Th>Size</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Uploaded</Table.Th>
                {viewer.can.files && <Table.Th aria-label="Actions" />}
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((f) => (
                <Table.Tr key={f.id} data-testid="file-row">
                  {onSelect && (
                    <Table.Td>
                      <Checkbox aria-label={`Select ${f.filename}`} checked={selected.includes(f.id)} onChange={() => toggle(f.id)} />
                    </Table.Td>
                  )}
                  <Table.Td>{f.filename}</Table.Td>
                  <Table.Td>
                    <Text size="xs" ff="monospace">
                      {f.id}
                    </Text>
                  </Table.Td>
                  <Table.Td>{f.purpose}</Table.Td>
                  <Table.Td>{bytes(f.bytes)}</Table.Td>
                  <Table.Td title={f.statusDetails ?? undefined}>
                    <StatusBadge status={f.status} />
                  </Table.Td>
                  <Table.Td>{when(f.createdAt)}</Table.Td>
                  {viewer.can.files && (
                    <Table.Td>
                      <Button size="xs" variant="subtle" color="red" onClick={() => void onDelete(f.id, f.filename)} aria-label={`Delete file ${f.filename}`}>
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
    </Stack>
  );
}
