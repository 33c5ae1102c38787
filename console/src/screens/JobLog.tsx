import { Code, Text, Title } from '@mantine/core';
import { useEffect, useRef } from 'react';
import { useSubscription } from 'urql';
import { JobLogsDocument, type JobLogsSubscription } from '../generated/graphql';
import { ApiError } from '../ui';

type LogLine = JobLogsSubscription['jobLogs']['lines'][number];
const EMPTY = new Map<number, LogLine>();

/**
 * A job's log following live through `jobLogs`, for every kind of job (fine-tuning, batch): lines kept by offset,
 * so a reconnect repeats none (src/client.ts resumes after the last one). `onLines` hears how many lines it has,
 * for a page that reads more as the log grows (the fine-tuning job's status and loss curve).
 */
export function JobLog({ jobId, live, onLines }: { jobId: string; live: boolean; onLines?: (count: number) => void }) {
  // Lines are kept by the subscription's handler, which sees every event: an effect on `data` sees only the
  // latest, and events that arrive within one render (a loaded machine batches them) would be lost.
  const [logs] = useSubscription<JobLogsSubscription, Map<number, LogLine>>(
    { query: JobLogsDocument, variables: { jobId, fromOffset: 0 } },
    (previous, data) => {
      const next = new Map(previous);
      for (const line of data.jobLogs.lines) next.set(line.offset, line);
      return next;
    },
  );
  const seen = logs.data ?? EMPTY;
  useEffect(() => {
    onLines?.(seen.size);
  }, [seen.size, onLines]);
  const bottom = useRef<HTMLDivElement>(null);
  const lines = [...seen.values()].sort((a, b) => a.offset - b.offset);
  useEffect(() => {
    bottom.current?.scrollIntoView({ block: 'nearest' });
  }, [lines.length]);
  return (
    <>
      <ApiError error={logs.error} />
      <Title order={4}>
        Log{' '}
        {live && (
          <Text span size="sm" c="dimmed">
            (live)
          </Text>
        )}
      </Title>
      <Code block mah={480} style={{ overflow: 'auto' }} aria-label="Job log" data-testid="job-log">
        {lines.length === 0 ? 'No log lines yet.' : lines.map((l) => l.text).join('\n')}
        <div ref={bottom} />
      </Code>
    </>
  );
}
