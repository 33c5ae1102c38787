import { Anchor, Button, Card, Group, NumberInput, Stack, Text, Textarea, TextInput, Title } from '@mantine/core';
import { useEffect, useState, type FormEvent } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import {
  BatchJobDocument,
  BatchJobsDocument,
  CancelBatchJobDocument,
  CreateBatchJobDocument,
  DeleteBatchJobDocument,
  JobsUpdatedDocument,
  JobUpdatedDocument,
} from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';
import { JobList } from './JobList';
import { JobLog } from './JobLog';

const FINISHED = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/** Start a batch job (LLMariner §4b): an image (or a preset such as pytorch-2.1) and a shell command. */
function NewBatchJob({ onCreated }: { onCreated: (id: string) => void }) {
  const [creation, create] = useMutation(CreateBatchJobDocument);
  const [image, setImage] = useState('pytorch-2.1');
  const [command, setCommand] = useState('');
  const [gpuCount, setGpuCount] = useState<number | string>(0);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const result = await create({ input: { image: image.trim(), command, gpuCount: Number(gpuCount) || 0 } });
    if (result.data) onCreated(result.data.createBatchJob.id);
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} aria-label="Start a batch job">
        <Stack gap="xs">
          <Title order={4}>New batch job</Title>
          <Group align="flex-end" wrap="wrap">
            <TextInput
              label="Image"
              description="A preset or an image reference"
              value={image}
              onChange={(e) => setImage(e.currentTarget.value)}
              w={220}
              required
            />
            <NumberInput label="GPUs" value={gpuCount} onChange={setGpuCount} min={0} max={64} w={90} />
          </Group>
          <Textarea
            label="Command"
            description="Run with /bin/sh -c"
            value={command}
            onChange={(e) => setCommand(e.currentTarget.value)}
            autosize
            minRows={2}
            styles={{ input: { fontFamily: 'monospace' } }}
            required
          />
          <Group>
            <Button type="submit" loading={creation.fetching} disabled={!command.trim() || !image.trim()}>
              Start batch job
            </Button>
          </Group>
          <ApiError error={creation.error} />
        </Stack>
      </form>
    </Card>
  );
}

/** The project's batch jobs, newest first, read again whenever one of the project's jobs changes (`jobsUpdated`). */
export function BatchJobs() {
  const viewer = useViewer();
  const [jobs, refetch] = useQuery({ query: BatchJobsDocument });
  const [updates] = useSubscription({ query: JobsUpdatedDocument });
  const [cancellation, cancel] = useMutation(CancelBatchJobDocument);
  const [deletion, remove] = useMutation(DeleteBatchJobDocument);
  useEffect(() => {
    if (updates.data) refetch({ requestPolicy: 'network-only' });
  }, [updates.data, refetch]);
  const after = () => refetch({ requestPolicy: 'network-only' });
  return (
    <Stack>
      <Title order={2}>Batch jobs</Title>
      {viewer.can.jobs && <NewBatchJob onCreated={(id) => (window.location.hash = `#/batch-jobs/${id}`)} />}
      <ApiError error={jobs.error ?? updates.error ?? cancellation.error ?? deletion.error} />
      <JobList
        label="Batch jobs"
        jobs={jobs.data?.batchJobs.items}
        loading={jobs.fetching}
        loadingLabel="Loading batch jobs"
        empty="No batch jobs yet."
        href={(jobId) => `#/batch-jobs/${jobId}`}
        minWidth={640}
        detail={{
          heading: 'Command',
          cell: (job) => (
            <Text size="sm" ff="monospace" lineClamp={2} style={{ overflowWrap: 'anywhere' }}>
              {job.command}
            </Text>
          ),
        }}
        status={(job) => (job.pendingAction === 'CANCELLING' ? 'CANCELLING' : job.status)}
        actions={
          viewer.can.jobs
            ? (job) =>
                FINISHED.includes(job.status) ? (
                  <Button size="xs" variant="subtle" color="red" aria-label={`Delete ${job.id}`} onClick={() => void remove({ id: job.id }).then(after)}>
                    Delete
                  </Button>
                ) : (
                  <Button size="xs" variant="subtle" color="red" aria-label={`Cancel ${job.id}`} onClick={() => void cancel({ id: job.id }).then(after)}>
                    Cancel
                  </Button>
                )
            : undefined
        }
      />
    </Stack>
  );
}

/** One batch job: what it runs, its status live, and its log following live through `jobLogs`. */
export function BatchJobPage({ id }: { id: string }) {
  const viewer = useViewer();
  const [job, refetch] = useQuery({ query: BatchJobDocument, variables: { id } });
  // jobUpdated sends the job's status as it is when the page subscribes, then each change: a job that
  // finished between the query and the subscription still shows finished (jobsUpdated would say nothing).
  const [live] = useSubscription({ query: JobUpdatedDocument, variables: { jobId: id } });
  const [cancellation, cancel] = useMutation(CancelBatchJobDocument);
  const liveStatus = live.data?.jobUpdated.status;
  useEffect(() => {
    // The rest of the job (finished at, error) is read again at each status it reaches.
    if (liveStatus) refetch({ requestPolicy: 'network-only' });
  }, [liveStatus, refetch]);
  const data = job.data?.batchJob && { ...job.data.batchJob, status: liveStatus ?? job.data.batchJob.status };
  const finished = !!data && FINISHED.includes(data.status);
  return (
    <Stack>
      <Anchor href="#/batch-jobs">← Batch jobs</Anchor>
      <ApiError error={job.error ?? cancellation.error} />
      {job.data && !data && <Text>No such batch job in this project.</Text>}
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
              {viewer.can.jobs && !finished && (
                <Button color="red" variant="light" size="xs" onClick={() => void cancel({ id }).then(() => refetch({ requestPolicy: 'network-only' }))}>
                  Cancel job
                </Button>
              )}
            </Group>
            <Text size="sm">
              Image {data.image} · {data.gpuCount} GPU · {data.workerCount} worker · created {when(data.createdAt)} · finished {when(data.finishedAt)}
            </Text>
            <Text size="sm" ff="monospace" style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>
              $ {data.command}
            </Text>
            {data.error && <Text c="red" style={{ whiteSpace: 'pre-wrap' }}>{`${data.error.message} (${data.error.code})`}</Text>}
          </Stack>
        </Card>
      )}
      <JobLog jobId={id} live={!finished} />
    </Stack>
  );
}
