import { Button, Group, Loader, SegmentedControl, Stack, Table, Text, Title } from '@mantine/core';
import { lazy, Suspense, useEffect, useState } from 'react';
import { useClient } from 'urql';
import { UsageScreenDocument, type UsageScreenQuery } from '../generated/graphql';
import { ApiError } from '../ui';

const LineChart = lazy(() => import('./LineChart'));

/** Each period and the width of its chart's buckets (`modelUsageSummaries` buckets start on whole hours). */
const PERIODS: Record<string, { label: string; seconds: number; intervalSeconds: number }> = {
  hour: { label: 'Last hour', seconds: 3600, intervalSeconds: 300 },
  day: { label: 'Last 24 hours', seconds: 86_400, intervalSeconds: 7200 },
  week: { label: 'Last 7 days', seconds: 7 * 86_400, intervalSeconds: 14 * 3600 },
};
const HOUR_MS = 3600 * 1000;

type Row = UsageScreenQuery['apiUsages'][number];
interface Loaded {
  rows: Row[];
  /** Bucket starts, seconds since the epoch. */
  x: number[];
  /** Requests per model per bucket. */
  byModel: Map<string, number[]>;
}

/**
 * The project's inference usage over a period, in one request: requests and tokens per model and key
 * (`apiUsages` over the whole period), and requests per model over time (`modelUsageSummaries`, whose range
 * the API truncates to whole hours: the chart asks from the hour the period starts in to the end of this hour
 * and keeps the buckets that overlap the period).
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
    const { seconds, intervalSeconds } = PERIODS[period]!;
    const start = end - seconds * 1000;
    const step = intervalSeconds * 1000;
    const variables = {
      startTime: new Date(start).toISOString(),
      endTime: new Date(end).toISOString(),
      bucketStart: new Date(Math.floor(start / HOUR_MS) * HOUR_MS).toISOString(),
      bucketEnd: new Date((Math.floor(end / HOUR_MS) + 1) * HOUR_MS).toISOString(),
      intervalSeconds,
    };
    void client
      .query(UsageScreenDocument, variables, { requestPolicy: 'network-only' })
      .toPromise()
      .then((result) => {
        if (!current) return;
        setError(result.error ?? null);
        const rows = result.data?.apiUsages ?? [];
        const points = (result.data?.modelUsageSummaries ?? []).filter((p) => {
          const at = Date.parse(p.timestamp);
          return at + step > start && at <= end;
        });
        const byModel = new Map<string, number[]>();
        points.forEach((point, i) => {
          for (const v of point.values) {
            const series = byModel.get(v.modelId) ?? new Array<number>(points.length).fill(0);
            series[i] = v.totalRequests;
            byModel.set(v.modelId, series);
          }
        });
        setLoaded({ rows, x: points.map((p) => (Date.parse(p.timestamp) + step / 2) / 1000), byModel });
      });
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
