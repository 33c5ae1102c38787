import { Button, Group, Loader, SegmentedControl, Stack, Table, Text, Title } from '@mantine/core';
import { lazy, Suspense, useEffect, useState } from 'react';
import { useClient } from 'urql';
import { ApiUsagesDocument, type ApiUsagesQuery } from '../generated/graphql';
import { ApiError } from '../ui';

const LineChart = lazy(() => import('./LineChart'));

const PERIODS: Record<string, { label: string; seconds: number }> = {
  hour: { label: 'Last hour', seconds: 3600 },
  day: { label: 'Last 24 hours', seconds: 86_400 },
  week: { label: 'Last 7 days', seconds: 7 * 86_400 },
};
const BUCKETS = 12;

type Row = ApiUsagesQuery['apiUsages'][number];
interface Loaded {
  rows: Row[];
  /** Bucket starts, seconds since the epoch. */
  x: number[];
  /** Requests per model per bucket. */
  byModel: Map<string, number[]>;
}

/**
 * The project's inference usage over a period: requests and tokens per model and key (`apiUsages` over the
 * whole period), and requests per model over time (`apiUsages` of each of 12 buckets).
 */
export function Usage() {
  const client = useClient();
  const [period, setPeriod] = useState('hour');
  const [asked, setAsked] = useState(0);
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState<Error | null>(null);
  useEffect(() => {
    let current = true;
    const end = Date.now();
    const { seconds } = PERIODS[period]!;
    const start = end - seconds * 1000;
    const step = (seconds * 1000) / BUCKETS;
    const ask = (from: number, to: number) =>
      client
        .query(ApiUsagesDocument, { startTime: new Date(from).toISOString(), endTime: new Date(to).toISOString() }, { requestPolicy: 'network-only' })
        .toPromise();
    void Promise.all([ask(start, end), ...Array.from({ length: BUCKETS }, (_, i) => ask(start + i * step, start + (i + 1) * step))]).then(
      ([whole, ...buckets]) => {
        if (!current) return;
        const failed = [whole, ...buckets].find((r) => r.error);
        setError(failed?.error ?? null);
        const rows = whole.data?.apiUsages ?? [];
        const byModel = new Map<string, number[]>();
        for (const model of new Set(rows.map((r) => r.modelId))) byModel.set(model, new Array<number>(BUCKETS).fill(0));
        buckets.forEach((bucket, i) => {
          for (const r of bucket.data?.apiUsages ?? []) {
            const series = byModel.get(r.modelId) ?? new Array<number>(BUCKETS).fill(0);
            series[i]! += r.totalRequests;
            byModel.set(r.modelId, series);
          }
        });
        setLoaded({ rows, x: Array.from({ length: BUCKETS }, (_, i) => (start + (i + 0.5) * step) / 1000), byModel });
      },
    );
    return () => {
      current = false;
    };
  }, [client, period, asked]);
  const rows = [...(loaded?.rows ?? [])].sort((a, b) => b.totalRequests - a.totalRequests);
  return (
    <Stack>
      <Group justify="space-between" wrap="wrap">
        <Title order={2}>Usage</Title>
        <Group gap="xs">
          <Button variant="default" size="xs" onClick={() => setAsked((n) => n + 1)}>
            Refresh
          </Button>
          <SegmentedControl
            aria-label="Period"
            value={period}
            onChange={setPeriod}
            data={Object.entries(PERIODS).map(([value, p]) => ({ value, label: p.label }))}
          />
        </Group>
      </Group>
      <ApiError error={error} />
      {!loaded && <Loader aria-label="Loading usage" />}
      {loaded && rows.length === 0 && <Text>No requests in this period.</Text>}
      {loaded && rows.length > 0 && (
        <>
          <Suspense fallback={<Loader size="sm" aria-label="Loading the chart" />}>
            <LineChart
              label="Requests per model over time"
              time
              bars={loaded.byModel.size === 1}
              x={loaded.x}
              series={[...loaded.byModel].map(([model, values]) => ({ label: model, values }))}
            />
          </Suspense>
          <Table.ScrollContainer minWidth={640}>
            <Table aria-label="Usage by model and key" striped>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Model</Table.Th>
                  <Table.Th>API key</Table.Th>
                  <Table.Th>Requests</Table.Th>
                  <Table.Th>Failed</Table.Th>
                  <Table.Th>Prompt tokens</Table.Th>
                  <Table.Th>Completion tokens</Table.Th>
                  <Table.Th>Average latency</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {rows.map((r) => (
                  <Table.Tr key={`${r.modelId}/${r.apiKeyId ?? r.userId}`}>
                    <Table.Td>{r.modelId}</Table.Td>
                    <Table.Td>{r.apiKey?.name ?? (r.apiKeyId ? 'deleted key' : `${r.userId} (signed in)`)}</Table.Td>
                    <Table.Td>{r.totalRequests}</Table.Td>
                    <Table.Td>{r.failedRequests}</Table.Td>
                    <Table.Td>{r.totalPromptTokens}</Table.Td>
                    <Table.Td>{r.totalCompletionTokens}</Table.Td>
                    <Table.Td>{Math.round(r.avgLatencyMs)} ms</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </>
      )}
    </Stack>
  );
}
