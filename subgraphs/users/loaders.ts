import DataLoader from 'dataloader';
import type { OrganizationMemberRow, OrganizationRow, ProjectMemberRow, ProjectRow, UserRow, UserStore } from './store.js';

/** Per-request batching: a page of organizations costs one summary query, not one per row. */
export function createUsersLoaders(store: UserStore) {
  const byId =
    <Row extends { id: string }>(load: (ids: readonly string[]) => Promise<Row[]>) =>
    async (ids: readonly string[]) => {
      const rows = new Map((await load(ids)).map((r) => [r.id, r]));
      return ids.map((id) => rows.get(id) ?? null);
    };
  const grouped =
    <Row extends { user_id: string }>(load: (ids: readonly string[]) => Promise<Row[]>) =>
    async (ids: readonly string[]) => {
      const rows = await load(ids);
      return ids.map((id) => rows.filter((r) => r.user_id === id));
    };
  return {
    organization: new DataLoader<string, OrganizationRow | null>(byId((ids) => store.organizationsByIds(ids))),
    project: new DataLoader<string, ProjectRow | null>(byId((ids) => store.projectsByIds(ids))),
    user: new DataLoader<string, UserRow | null>(byId((ids) => store.usersByIds(ids))),
    organizationSummary: new DataLoader(async (ids: readonly string[]) => {
      const summaries = await store.organizationSummaries(ids);
      return ids.map((id) => summaries.get(id)!);
    }),
    projectUserCount: new DataLoader(async (ids: readonly string[]) => {
      const counts = await store.projectUserCounts(ids);
      return ids.map((id) => counts.get(id) ?? 0);
    }),
    organizationBindings: new DataLoader<string, OrganizationMemberRow[]>(grouped((ids) => store.organizationMembershipsOfUsers(ids))),
    projectBindings: new DataLoader<string, ProjectMemberRow[]>(grouped((ids) => store.projectMembershipsOfUsers(ids))),
  };
}

export type UsersLoaders = ReturnType<typeof createUsersLoaders>;
