import { Anchor, Loader, Table, Text } from '@mantine/core';
import type { ReactNode } from 'react';
import { StatusBadge, when } from '../ui';

/** What every job in a list has: the fine-tuning and batch job lists show these, and one column of their own. */
export interface ListedJob {
  id: string;
  status: string;
  createdAt: string;
}

/**
 * A list of jobs, newest first (the API's order): each job's id linking to its page, a column of the kind's own
 * (the model, the command), its status and when it was created, and actions when the viewer may take any.
 * `jobs` undefined: not read yet (a loader); empty: `empty` is said.
 */
export function JobList<Job extends ListedJob>({
  label,
  jobs,
  loading,
  loadingLabel,
  empty,
  href,
  detail,
  status = (job) => job.status,
  actions,
  minWidth = 520,
}: {
  label: string;
  jobs: Job[] | undefined;
  loading: boolean;
  loadingLabel: string;
  empty: ReactNode;
  /** The job's page (`#/jobs/<id>`). */
  href: (id: string) => string;
  /** The kind's own column: its heading and its cell. */
  detail: { heading: string; cell: (job: Job) => ReactNode };
  /** The status shown (a batch job being cancelled says so). */
  status?: (job: Job) => string;
  /** The actions column, only for a viewer who may write jobs. */
  actions?: ((job: Job) => ReactNode) | undefined;
  minWidth?: number;
}) {
  if (!jobs) return loading ? <Loader aria-label={loadingLabel} /> : null;
  if (jobs.length === 0) return <Text>{empty}</Text>;
  return (
    <Table.ScrollContainer minWidth={minWidth}>
      <Table aria-label={label} striped highlightOnHover>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Job</Table.Th>
            <Table.Th>{detail.heading}</Table.Th>
            <Table.Th>Status</Table.Th>
            <Table.Th>Created</Table.Th>
            {actions && <Table.Th>Actions</Table.Th>}
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {jobs.map((job) => (
            <Table.Tr key={job.id}>
              <Table.Td>
                <Anchor href={href(job.id)}>{job.id}</Anchor>
              </Table.Td>
              <Table.Td>{detail.cell(job)}</Table.Td>
              <Table.Td>
                <StatusBadge status={status(job)} />
              </Table.Td>
              <Table.Td>{when(job.createdAt)}</Table.Td>
              {actions && <Table.Td>{actions(job)}</Table.Td>}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}
