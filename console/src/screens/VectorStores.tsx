import { Badge, Button, Card, Group, Loader, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useEffect, useState, type FormEvent } from 'react';
import { useClient, useMutation, useQuery } from 'urql';
import { CreateVectorStoreDocument, SearchVectorStoreDocument, VectorStoresDocument, type SearchVectorStoreQuery } from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';
import { bytes, Files } from './Files';

type Results = SearchVectorStoreQuery['searchVectorStore']['results'];

/** Vector stores: built from selected files, listed with their file counts, and searched. */
export function VectorStores() {
  const viewer = useViewer();
  const client = useClient();
  const [stores, refetch] = useQuery({ query: VectorStoresDocument });
  const [creation, create] = useMutation(CreateVectorStoreDocument);
  const [fileIds, setFileIds] = useState<string[]>([]);
  const [name, setName] = useState('');
  const [storeId, setStoreId] = useState<string | null>(null);
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<Results | null>(null);
  const [searchError, setSearchError] = useState<Error | null>(null);
  const [searching, setSearching] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const result = await create({ input: { name: name.trim(), fileIds } });
    if (result.data) {
      setName('');
      setStoreId(result.data.createVectorStore.id);
      refetch({ requestPolicy: 'network-only' });
    }
  };
  const search = async (event: FormEvent) => {
    event.preventDefault();
    if (!storeId) return;
    setSearching(true);
    const result = await client.query(
      SearchVectorStoreDocument,
      { input: { vectorStoreId: storeId, query: [query.trim()], maxNumResults: 5 } },
      { requestPolicy: 'network-only' },
    );
    setSearching(false);
    setSearchError(result.error ?? null);
    setResults(result.data?.searchVectorStore.results ?? null);
  };
  const items = stores.data?.vectorStores.items ?? [];
  // Files are chunked and embedded after creation: the list is read again until every store is done.
  const busy = items.some((s) => s.status === 'IN_PROGRESS');
  useEffect(() => {
    if (!busy) return;
    const timer = setInterval(() => refetch({ requestPolicy: 'network-only' }), 1000);
    return () => clearInterval(timer);
  }, [busy, refetch]);
  return (
    <Stack>
      <Title order={2}>Vector stores</Title>
      <ApiError error={stores.error ?? creation.error} />
      {stores.fetching && !stores.data && <Loader aria-label="Loading vector stores" />}
      {stores.data && items.length === 0 && <Text>No vector stores yet: select files below and create one.</Text>}
      {items.length > 0 && (
        <Table.ScrollContainer minWidth={560}>
          <Table aria-label="Vector stores" striped>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Files</Table.Th>
                <Table.Th>Size</Table.Th>
                <Table.Th>Embedding model</Table.Th>
                <Table.Th>Created</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((s) => (
                <Table.Tr key={s.id} data-testid={`vector-store-${s.name}`}>
                  <Table.Td>{s.name}</Table.Td>
                  <Table.Td>
                    <StatusBadge status={s.status} />
                  </Table.Td>
                  <Table.Td>
                    {s.fileCounts.completed} / {s.fileCounts.total}
                    {s.fileCounts.failed > 0 && (
                      <Badge color="red" variant="light" ml={4}>
                        {s.fileCounts.failed} failed
                      </Badge>
                    )}
                  </Table.Td>
                  <Table.Td>{bytes(s.usageBytes)}</Table.Td>
                  <Table.Td>{s.embeddingModel}</Table.Td>
                  <Table.Td>{when(s.createdAt)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {items.length > 0 && (
        <Card withBorder>
          <form onSubmit={search} aria-label="Search a vector store">
            <Stack>
              <Group align="flex-end" wrap="wrap">
                <Select label="Vector store" data={items.map((s) => ({ value: s.id, label: s.name }))} value={storeId} onChange={setStoreId} w={220} />
                <TextInput label="Search" value={query} onChange={(e) => setQuery(e.currentTarget.value)} w={320} maw="100%" />
                <Button type="submit" disabled={!storeId || !query.trim()} loading={searching}>
                  Search
                </Button>
              </Group>
              <ApiError error={searchError} />
              {results?.length === 0 && <Text>Nothing matched.</Text>}
              {results?.map((r) => (
                <Card key={`${r.fileId}-${r.chunkIndex}`} withBorder padding="sm" data-testid="search-result">
                  <Group justify="space-between">
                    <Text fw={600}>{r.filename}</Text>
                    <Text size="sm" c="dimmed">
                      score {r.score.toFixed(3)}
                    </Text>
                  </Group>
                  <Text size="sm" style={{ whiteSpace: 'pre-wrap' }}>
                    {r.text}
                  </Text>
                </Card>
              ))}
            </Stack>
          </form>
        </Card>
      )}
      {viewer.can.vectorStores && (
        <form onSubmit={submit} aria-label="Create a vector store">
          <Group align="flex-end" wrap="wrap">
            <TextInput label="New vector store's name" value={name} onChange={(e) => setName(e.currentTarget.value)} required w={280} />
            <Button type="submit" loading={creation.fetching} disabled={!name.trim() || fileIds.length === 0}>
              Create from {fileIds.length} file{fileIds.length === 1 ? '' : 's'}
            </Button>
          </Group>
        </form>
      )}
      <Files onSelect={viewer.can.vectorStores ? setFileIds : undefined} />
    </Stack>
  );
}
