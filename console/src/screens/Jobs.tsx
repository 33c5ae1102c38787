import { Anchor, Button, Card, Code, Group, Loader, Stack, Table, Text, Title } from '@mantine/core';
import { useEffect, useRef, useState } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { CancelFineTuningJobDocument, FineTuningJobDocument, FineTuningJobsDocument, JobLogsDocument, type JobLogsSubscription } from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';

/** Fine-tuning jobs, newest first. */
export function Jobs() {
  const [jobs] = useQuery({ query: FineTuningJobsDocument });
  return (
    <Stack>
      <Title order={2}>Fine-tuning jobs</Title>
      <ApiError error={jobs.error} />
      {jobs.fetching && !jobs.data && <Loader aria-label="Loading jobs" />}
      {jobs.data?.fineTuningJobs.items.length === 0 && <Text>No fine-tuning jobs yet: start one with the OpenAI SDK or GraphQL (createFineTuningJob).</Text>}
      {(jobs.data?.fineTuningJobs.items.length ?? 0) > 0 && (
        <Table.ScrollContainer minWidth={520}>
          <Table aria-label="Fine-tuning jobs" striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Job</Table.Th>
                <Table.Th>Model</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Created</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {jobs.data?.fineTuningJobs.items.map((job) => (
                <Table.Tr key={job.id}>
                  <Table.Td>
                    <Anchor href={`#/jobs/${job.id}`}>{job.id}</Anchor>
                  </Table.Td>
                  <Table.Td>{job.fineTunedModel ?? job.model}</Table.Td>
                  <Table.Td>
                    <StatusBadge status={job.status} />
                  </Table.Td>
                  <Table.Td>{when(job.createdAt)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}

type LogLine = JobLogsSubscription['jobLogs']['lines'][number];

/** One job, with its log following live through `jobLogs` (lines kept by offset: a reconnect repeats none). */
export function JobPage({ id }: { id: string }) {
  const viewer = useViewer();
  const [job, refetch] = useQuery({ query: FineTuningJobDocument, variables: { id } });
  const [cancellation, cancel] = useMutation(CancelFineTuningJobDocument);
  const [logs] = useSubscription({ query: JobLogsDocument, variables: { jobId: id, fromOffset: 0 } });
  // Every line seen, by offset: a reconnect that sends lines again repeats none.
  const [seen, setSeen] = useState<Map<number, LogLine>>(() => new Map());
  const chunk = logs.data?.jobLogs;
  useEffect(() => {
    if (!chunk || chunk.lines.length === 0) return;
    setSeen((previous) => {
      const next = new Map(previous);
      for (const line of chunk.lines) next.set(line.offset, line);
      return next;
    });
  }, [chunk]);
  const bottom = useRef<HTMLDivElement>(null);
  const lines = [...seen.values()].sort((a, b) => a.offset - b.offset);
  useEffect(() => {
    bottom.current?.scrollIntoView({ block: 'nearest' });
  }, [lines.length]);
  const data = job.data?.fineTuningJob;
  const finished = data && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(data.status);
  // The status until the job ends: read again every few seconds and whenever log lines arrive.
  useEffect(() => {
    if (!data || finished) return;
    const timer = setInterval(() => refetch({ requestPolicy: 'network-only' }), 3000);
    return () => clearInterval(timer);
  }, [data, finished, refetch]);
  useEffect(() => {
    if (seen.size > 0) refetch({ requestPolicy: 'network-only' });
  }, [seen.size, refetch]);
  return (
    <Stack>
      <Anchor href="#/jobs">← Jobs</Anchor>
      <ApiError error={job.error ?? cancellation.error ?? logs.error} />
      {job.data && !data && <Text>No such job in this project.</Text>}
      {data && (
        <Card withBorder>
          <Stack gap="xs">
            <Group justify="space-between" wrap="wrap">
              <Group gap="xs">
                <Title order={3} style={{ wordBreak: 'break-all' }}>
                  {data.id}
                </Title>
                <StatusBadge status={data.status} />
              </Group>
              {viewer.canWrite && !finished && (
                <Button color="red" variant="light" size="xs" onClick={() => void cancel({ id }).then(() => refetch({ requestPolicy: 'network-only' }))}>
                  Cancel job
                </Button>
              )}
            </Group>
            <Text size="sm">
              Base model {data.model} · training file {data.trainingFile} · created {when(data.createdAt)} · finished {when(data.finishedAt)}
            </Text>
            {data.fineTunedModel && <Text size="sm">Fine-tuned model: {data.fineTunedModel}</Text>}
            {data.error && <Text c="red">{`${data.error.message} (${data.error.code})`}</Text>}
          </Stack>
        </Card>
      )}
      <Title order={4}>
        Log{' '}
        {!finished && (
          <Text span size="sm" c="dimmed">
            (live)
          </Text>
        )}
      </Title>
      <Code block mah={480} style={{ overflow: 'auto' }} aria-label="Job log" data-testid="job-log">
        {lines.length === 0 ? 'No log lines yet.' : lines.map((l) => l.text).join('\n')}
        <div ref={bottom} />
      </Code>
    </Stack>
  );
}
