import { Code, Text, Title } from '@mantine/core';
import { useEffect, useRef, useState } from 'react';
import { useSubscription } from 'urql';
import { JobLogsDocument, type JobLogsSubscription } from '../generated/graphql';
import { ApiError } from '../ui';

type LogLine = JobLogsSubscription['jobLogs']['lines'][number];

/** A job's log following live through `jobLogs`; lines kept by offset, so a reconnect repeats none (src/client.ts resumes). */
export function JobLog({ jobId, live }: { jobId: string; live: boolean }) {
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
