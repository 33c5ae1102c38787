import { Code, Text, Title } from '@mantine/core';
import { useEffect, useRef, useState } from 'react';
import { useSubscription } from 'urql';
import { JobLogsDocument, type JobLogsSubscription } from '../generated/graphql';
import { ApiError } from '../ui';

type LogLine = JobLogsSubscription['jobLogs']['lines'][number];

/**
 * A job's log following live through `jobLogs`, for every kind of job (fine-tuning, batch): lines kept by offset,
 * so a reconnect repeats none (src/client.ts resumes after the last one). `onLines` hears how many lines it has,
 * for a page that reads more as the log grows (the fine-tuning job's status and loss curve).
 */
export function JobLog({ jobId, live, onLines }: { jobId: string; live: boolean; onLines?: (count: number) => void }) {
  const [logs] = useSubscription({ query: JobLogsDocument, variables: { jobId, fromOffset: 0 } });
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
