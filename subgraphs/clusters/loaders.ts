import DataLoader from 'dataloader';
import type { ClusterStore, ComponentStatusRow } from './store.js';
import type { GpuMetricValue } from './telemetry.js';
import type { TelemetryStore } from './telemetryStore.js';

/** Per-request batching: one query for the component statuses of every cluster in a list, one for the GPUs of every telemetry point. */
export function createClusterLoaders(store: ClusterStore, telemetry: TelemetryStore) {
  return {
    telemetryGpus: new DataLoader<string, GpuMetricValue[]>(async (rowIds) => {
      const gpus = await telemetry.gpus(rowIds);
      return rowIds.map((id) => gpus.get(id) ?? []);
    }),
    componentStatuses: new DataLoader<string, ComponentStatusRow[]>(async (clusterIds) => {
      const rows = await store.componentStatuses(clusterIds);
      return clusterIds.map((id) => rows.filter((row) => row.cluster_id === id));
    }),
  };
}

export type ClusterLoaders = ReturnType<typeof createClusterLoaders>;
