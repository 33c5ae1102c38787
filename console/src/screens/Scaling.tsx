import { Anchor, Card, Group, Stack, Table, Text, Title } from '@mantine/core';
import { lazy, Suspense, useEffect, useState } from 'react';
import { useQuery, useSubscription } from 'urql';
import { ClusterNamesDocument, RuntimeScalingDocument } from '../generated/graphql';
import { ApiError, when } from '../ui';
import type { ReplicaPoint } from './ReplicasChart';

const ReplicasChart = lazy(() => import('./ReplicasChart'));
const HISTORY = 240;

/**
 * One model's runtimes and its autoscaler, live from `runtimeScaling`: the state at once, then every report
 * (replicas, in-flight requests, the averaged load and each scale decision with its reason).
 */
export function Scaling({ modelId }: { modelId: string }) {
  const [live] = useSubscription({ query: RuntimeScalingDocument, variables: { modelId } });
  const runtimes = live.data?.runtimeScaling;
  // Names where the viewer may read clusters; a role without the clusters scope sees the ids.
  const [clusters] = useQuery({ query: ClusterNamesDocument });
  const names = new Map((clusters.data?.clusters.items ?? []).map((c) => [c.id, c.name]));
  const clusterName = (id: string) => names.get(id) ?? id;
  const [history, setHistory] = useState<ReplicaPoint[]>([]);
  const [decisions, setDecisions] = useState<{ time: number; clusterId: string; reason: string }[]>([]);
  useEffect(() => {
    if (!runtimes) return;
    const time = Date.now();
    setHistory((previous) =>
      [...previous, { time, ready: runtimes.reduce((n, r) => n + r.readyReplicas, 0), desired: runtimes.reduce((n, r) => n + r.desiredReplicas, 0) }].slice(
        -HISTORY,
      ),
    );
    setDecisions((previous) => {
      const next = [...previous];
      for (const r of runtimes) {
        const reason = r.autoscaling?.lastScaleReason;
        const last = [...next].reverse().find((d) => d.clusterId === r.clusterId);
        if (reason && last?.reason !== reason) next.push({ time, clusterId: r.clusterId, reason });
      }
      return next.slice(-50);
    });
  }, [runtimes]);
  return (
    <Stack>
      <Anchor href="#/models">← Models</Anchor>
      <Group justify="space-between" wrap="wrap">
        <Title order={2} style={{ wordBreak: 'break-all' }}>
          Scaling of {modelId}
        </Title>
        <Text size="sm" c="dimmed" aria-live="polite">
          {runtimes ? `Live: ${runtimes.length} runtime${runtimes.length === 1 ? '' : 's'}` : live.error ? 'Live updates unavailable' : 'Connecting…'}
        </Text>
      </Group>
      <ApiError error={live.error} />
      {runtimes?.length === 0 && <Text>No runtime for this model yet: the first request starts one (on-demand), or activate it on the models page.</Text>}
      {runtimes && runtimes.length > 0 && (
        <Table.ScrollContainer minWidth={640}>
          <Table aria-label={`Runtimes of ${modelId}`} striped>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Cluster</Table.Th>
                <Table.Th>Ready / desired</Table.Th>
                <Table.Th>In flight</Table.Th>
                <Table.Th>Average in flight</Table.Th>
                <Table.Th>Range</Table.Th>
                <Table.Th>Scale to zero at</Table.Th>
                <Table.Th>Status</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {runtimes.map((r) => (
                <Table.Tr key={r.clusterId} data-testid="scaling-row">
                  <Table.Td>
                    <Text size="xs" ff="monospace">
                      {clusterName(r.clusterId)}
                    </Text>
                  </Table.Td>
                  <Table.Td>
                    {r.readyReplicas} / {r.desiredReplicas}
                  </Table.Td>
                  <Table.Td>{r.inFlightRequests}</Table.Td>
                  <Table.Td>{r.autoscaling ? r.autoscaling.averageInFlight.toFixed(2) : '—'}</Table.Td>
                  <Table.Td>{r.autoscaling ? `${r.autoscaling.minReplicas}–${r.autoscaling.maxReplicas}` : 'fixed'}</Table.Td>
                  <Table.Td>{when(r.autoscaling?.scaleToZeroAt)}</Table.Td>
                  <Table.Td>{r.statusMessage || '—'}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {history.length > 0 && (
        <Card withBorder>
          <Title order={4}>Replicas since this page opened</Title>
          <Suspense fallback={null}>
            <ReplicasChart points={history} label={modelId} />
          </Suspense>
          <Text size="sm" c="dimmed" data-testid="replicas-summary">
            Now {history.at(-1)!.ready} ready of {history.at(-1)!.desired} desired · at most {Math.max(...history.map((p) => p.ready))} ready since this page
            opened
          </Text>
        </Card>
      )}
      <Card withBorder>
        <Title order={4}>Autoscaler decisions</Title>
        {decisions.length === 0 ? (
          <Text size="sm">None since this page opened.</Text>
        ) : (
          <Stack gap={2} aria-label="Autoscaler decisions">
            {decisions.map((d) => (
              <Text key={`${d.time}-${d.clusterId}`} size="sm">
                {new Date(d.time).toLocaleTimeString()} · {clusterName(d.clusterId)}: {d.reason}
              </Text>
            ))}
          </Stack>
        )}
      </Card>
    </Stack>
  );
}
