import { Anchor, Button, Card, Group, Loader, Stack, Table, Text, Title } from '@mantine/core';
import { lazy, Suspense, useEffect, useState } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { ActivateModelDocument, DeactivateModelDocument, ModelsDocument, RuntimesUpdatedDocument, type RuntimeFieldsFragment } from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';
import type { ReplicaPoint } from './ReplicasChart';

/** The chart library is loaded with the first runtime to draw, not with the first screen. */
const ReplicasChart = lazy(() => import('./ReplicasChart'));
/** Points kept per model (one per runtimes event). */
const HISTORY = 120;

/** Models with their loading and activation status, and their runtimes per cluster, live. */
export function Models() {
  const viewer = useViewer();
  const [models, refetch] = useQuery({ query: ModelsDocument });
  const [live] = useSubscription({ query: RuntimesUpdatedDocument });
  const [activation, activate] = useMutation(ActivateModelDocument);
  const [deactivation, deactivate] = useMutation(DeactivateModelDocument);
  const runtimes = live.data?.runtimesUpdated.runtimes ?? [];
  const ready = new Set(live.data?.runtimesUpdated.readyModelIds ?? []);
  const byModel = new Map<string, RuntimeFieldsFragment[]>();
  for (const runtime of runtimes) byModel.set(runtime.modelId, [...(byModel.get(runtime.modelId) ?? []), runtime]);
  // Replicas over time, from the live events since the page opened.
  const [history, setHistory] = useState<Map<string, ReplicaPoint[]>>(new Map());
  const event = live.data;
  useEffect(() => {
    if (!event) return;
    const time = Date.now();
    setHistory((previous) => {
      const next = new Map(previous);
      const models = new Set([...previous.keys(), ...event.runtimesUpdated.runtimes.map((r) => r.modelId)]);
      for (const id of models) {
        const mine = event.runtimesUpdated.runtimes.filter((r) => r.modelId === id);
        const point = { time, ready: mine.reduce((n, r) => n + r.readyReplicas, 0), desired: mine.reduce((n, r) => n + r.desiredReplicas, 0) };
        next.set(id, [...(previous.get(id) ?? []), point].slice(-HISTORY));
      }
      return next;
    });
  }, [event]);
  const toggle = async (id: string, active: boolean) => {
    const result = active ? await deactivate({ id }) : await activate({ id });
    if (!result.error) refetch({ requestPolicy: 'network-only' });
  };

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Models</Title>
        <Text size="sm" c="dimmed" aria-live="polite">
          {live.data ? `Live: ${runtimes.length} runtime${runtimes.length === 1 ? '' : 's'}` : live.error ? 'Live updates unavailable' : 'Connecting…'}
        </Text>
      </Group>
      <ApiError error={models.error ?? live.error ?? activation.error ?? deactivation.error} />
      {models.fetching && !models.data && <Loader aria-label="Loading models" />}
      {models.data?.models.items.length === 0 && <Text>No models yet.</Text>}
      {models.data?.models.items.map((model) => {
        const active = model.activationStatus === 'ACTIVE';
        const modelRuntimes = byModel.get(model.id) ?? [];
        return (
          <Card key={model.id} withBorder padding="md" data-testid={`model-${model.id}`}>
            <Stack gap="xs">
              <Group justify="space-between" wrap="wrap">
                <Group gap="xs" wrap="wrap">
                  <Text fw={600} style={{ wordBreak: 'break-all' }}>
                    {model.id}
                  </Text>
                  <StatusBadge status={model.loadingStatus} />
                  <StatusBadge status={model.activationStatus} />
                  {ready.has(model.id) && <StatusBadge status="RUNNING" />}
                  <Anchor href={`#/scaling/${encodeURIComponent(model.id)}`} size="sm" aria-label={`Scaling of ${model.id}`}>
                    Scaling
                  </Anchor>
                </Group>
                {viewer.canWrite && model.loadingStatus === 'SUCCEEDED' && (
                  <Button
                    size="xs"
                    variant="light"
                    color={active ? 'orange' : 'green'}
                    onClick={() => void toggle(model.id, active)}
                    aria-label={`${active ? 'Deactivate' : 'Activate'} ${model.id}`}
                  >
                    {active ? 'Deactivate' : 'Activate'}
                  </Button>
                )}
              </Group>
              <Text size="sm" c="dimmed">
                {model.isBaseModel ? 'Base model' : 'Fine-tuned'} · {model.formats.join(', ').toLowerCase() || 'no format'} · owned by {model.ownedBy} · added{' '}
                {when(model.createdAt)}
              </Text>
              {model.loadingStatusMessage && <Text size="sm">{model.loadingStatusMessage}</Text>}
              {model.loadingFailureReason && (
                <Text size="sm" c="red">
                  {model.loadingFailureReason}
                </Text>
              )}
              {modelRuntimes.length > 0 && (
                <Table.ScrollContainer minWidth={420}>
                  <Table aria-label={`Runtimes of ${model.id}`} striped>
                    <Table.Thead>
                      <Table.Tr>
                        <Table.Th>Cluster</Table.Th>
                        <Table.Th>Ready / desired</Table.Th>
                        <Table.Th>In flight</Table.Th>
                        <Table.Th>Autoscaler</Table.Th>
                        <Table.Th>Status</Table.Th>
                      </Table.Tr>
                    </Table.Thead>
                    <Table.Tbody>
                      {modelRuntimes.map((r) => (
                        <Table.Tr key={r.clusterId} data-testid="runtime-row">
                          <Table.Td>{r.clusterId}</Table.Td>
                          <Table.Td>
                            {r.readyReplicas} / {r.desiredReplicas}
                          </Table.Td>
                          <Table.Td>{r.inFlightRequests}</Table.Td>
                          <Table.Td>
                            {r.autoscaling
                              ? `${r.autoscaling.minReplicas}–${r.autoscaling.maxReplicas}, avg ${r.autoscaling.averageInFlight.toFixed(1)}${r.autoscaling.lastScaleReason ? ` · ${r.autoscaling.lastScaleReason}` : ''}`
                              : '—'}
                          </Table.Td>
                          <Table.Td>{r.statusMessage || '—'}</Table.Td>
                        </Table.Tr>
                      ))}
                    </Table.Tbody>
                  </Table>
                </Table.ScrollContainer>
              )}
              {modelRuntimes.length > 0 && (
                <Suspense fallback={null}>
                  <ReplicasChart points={history.get(model.id) ?? []} label={model.id} />
                </Suspense>
              )}
            </Stack>
          </Card>
        );
      })}
    </Stack>
  );
}
