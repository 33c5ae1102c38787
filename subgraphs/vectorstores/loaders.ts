import DataLoader from 'dataloader';
import type { FileCounts, VectorStoreStore } from './store.js';

export interface VectorStoreLoaders {
  /** File counts and usage of stores, one query per request for all the stores it shows. */
  counts: DataLoader<string, FileCounts & { usageBytes: number }>;
}

const NONE = { inProgress: 0, completed: 0, failed: 0, cancelled: 0, total: 0, usageBytes: 0 };

export function createLoaders(store: VectorStoreStore): VectorStoreLoaders {
  return {
    counts: new DataLoader(async (ids) => {
      const counts = await store.fileCounts(ids);
      return ids.map((id) => counts.get(id) ?? NONE);
    }),
  };
}
