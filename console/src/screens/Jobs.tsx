import { Anchor, Button, Card, Group, Loader, NumberInput, Select, Stack, Text, TextInput, Title } from '@mantine/core';
import { lazy, Suspense, useEffect, useMemo, useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';
import {
  CancelFineTuningJobDocument,
  CreateFineTuningJobDocument,
  FilesDocument,
  FineTuningJobDocument,
  FineTuningJobMetricsDocument,
  FineTuningJobsDocument,
  ModelsDocument,
} from '../generated/graphql';
import { ApiError, StatusBadge, useViewer, when } from '../ui';
import { JobList } from './JobList';
import { JobLog } from './JobLog';

const LineChart = lazy(() => import('./LineChart'));

/** Start a fine-tuning job: a base model and an uploaded `fine-tune` file (Files screen). */
function NewFineTuningJob({ onCreated }: { onCreated: (id: string) => void }) {
  const [models] = useQuery({ query: ModelsDocument });
  const [files] = useQuery({ query: FilesDocument, variables: { purpose: 'fine-tune' } });
  const [creation, create] = useMutation(CreateFineTuningJobDocument);
  const [model, setModel] = useState<string | null>(null);
  const [trainingFile, setTrainingFile] = useState<string | null>(null);
  const [suffix, setSuffix] = useState('');
  const [epochs, setEpochs] = useState<number | string>(1);
  const baseModels = (models.data?.models.items ?? []).filter((m) => m.isBaseModel && m.loadingStatus === 'SUCCEEDED').map((m) => m.id);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!model || !trainingFile) return;
    const result = await create({
      input: { model, trainingFile, ...(suffix.trim() ? { suffix: suffix.trim() } : {}), hyperparameters: { nEpochs: Number(epochs) || 1 } },
    });
    if (result.data) onCreated(result.data.createFineTuningJob.id);
  };
  return (
    <Card withBorder>
      <form onSubmit={submit} aria-label="Start a fine-tuning job">
        <Stack gap="xs">
          <Title order={4}>New fine-tuning job</Title>
          <Group align="flex-end" wrap="wrap">
            <Select label="Base model" data={baseModels} value={model} onChange={setModel} w={220} required />
            <Select
              label="Training file"
              data={(files.data?.files.items ?? []).map((f) => ({ value: f.id, label: `${f.filename} (${f.id})` }))}
              value={trainingFile}
              onChange={setTrainingFile}
              nothingFoundMessage="Upload a fine-tune file on the Files screen"
              w={280}
              required
            />
            <TextInput label="Suffix" value={suffix} onChange={(e) => setSuffix(e.currentTarget.value)} w={140} />
            <NumberInput label="Epochs" value={epochs} onChange={setEpochs} min={1} max={50} w={100} />
            <Button type="submit" loading={creation.fetching} disabled={!model || !trainingFile}>
              Start job
            </Button>
          </Group>
          <ApiError error={creation.error} />
        </Stack>
      </form>
    </Card>
  );
}

/** Fine-tuning jobs, newest first. */
export function Jobs() {
  const viewer = useViewer();
  const [jobs] = useQuery({ query: FineTuningJobsDocument });
  return (
    <Stack>
      <Title order={2}>Fine-tuning jobs</Title>
      {viewer.can.jobs && <NewFineTuningJob onCreated={(id) => (window.location.hash = `#/jobs/${id}`)} />}
      <ApiError error={jobs.error} />
      <JobList
        label="Fine-tuning jobs"
        jobs={jobs.data?.fineTuningJobs.items}
        loading={jobs.fetching}
        loadingLabel="Loading jobs"
        empty="No fine-tuning jobs yet: start one with the OpenAI SDK or GraphQL (createFineTuningJob)."
        href={(jobId) => `#/jobs/${jobId}`}
        detail={{ heading: 'Model', cell: (job) => job.fineTunedModel ?? job.model }}
      />
    </Stack>
  );
}

/** One job: its status, its loss curve, and its log following live (JobLog). */
export function JobPage({ id }: { id: string }) {
  const viewer = useViewer();
  const [job, refetch] = useQuery({ query: FineTuningJobDocument, variables: { id } });
  const [cancellation, cancel] = useMutation(CancelFineTuningJobDocument);
  // How many log lines have arrived (JobLog follows them): the status and the loss curve are read again on each.
  const [logLines, setLogLines] = useState(0);
  const data = job.data?.fineTuningJob;
  const finished = data && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(data.status);
  // The status until the job ends: read again every few seconds and whenever log lines arrive.
  useEffect(() => {
    if (!data || finished) return;
    const timer = setInterval(() => refetch({ requestPolicy: 'network-only' }), 3000);
    return () => clearInterval(timer);
  }, [data, finished, refetch]);
  // The training metrics (events of type metrics), read again as log lines arrive: the loss curve grows live.
  const [metrics, refetchMetrics] = useQuery({ query: FineTuningJobMetricsDocument, variables: { id } });
  useEffect(() => {
    if (logLines === 0) return;
    refetch({ requestPolicy: 'network-only' });
    refetchMetrics({ requestPolicy: 'network-only' });
  }, [logLines, refetch, refetchMetrics]);
  const loss = useMemo(() => lossCurve(metrics.data?.fineTuningJob?.events.items ?? []), [metrics.data]);
  return (
    <Stack>
      <Anchor href="#/jobs">← Jobs</Anchor>
      <ApiError error={job.error ?? cancellation.error} />
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
              {viewer.can.jobs && !finished && (
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
      {loss.x.length > 0 && (
        <Card withBorder>
          <Title order={4}>Loss</Title>
          <Suspense fallback={<Loader size="sm" aria-label="Loading the chart" />}>
            <LineChart label="Training loss by step" x={loss.x} series={loss.series} height={180} />
          </Suspense>
        </Card>
      )}
      <JobLog jobId={id} live={!finished} onLines={setLogLines} />
    </Stack>
  );
}

/** step → train_loss (and valid_loss when reported) from the job's metrics events (newest first). */
function lossCurve(events: { type: string; data?: unknown }[]): { x: number[]; series: { label: string; values: (number | null)[] }[] } {
  const points = new Map<number, { train: number | null; valid: number | null }>();
  for (const event of events) {
    if (event.type !== 'metrics' || !event.data || typeof event.data !== 'object') continue;
    const data = event.data as Record<string, unknown>;
    if (typeof data['step'] !== 'number') continue;
    const number = (value: unknown) => (typeof value === 'number' ? value : null);
    points.set(data['step'], { train: number(data['train_loss']), valid: number(data['valid_loss']) });
  }
  const steps = [...points.keys()].sort((a, b) => a - b);
  const series = [{ label: 'train loss', values: steps.map((s) => points.get(s)!.train) }];
  if (steps.some((s) => points.get(s)!.valid !== null)) series.push({ label: 'validation loss', values: steps.map((s) => points.get(s)!.valid) });
  return { x: steps, series };
}
