import { createHash } from 'node:crypto';
import type { Knex } from '../../lib/db.js';
import { SCHEMA } from './store.js';
import type { GpuMetricValue, TelemetryRow, TelemetrySample } from './telemetry.js';

/** A changed report starts a new row at most this often; within it, it replaces the row's sample. */
const MIN_ROW_MS = 60_000;

interface StoredRow {
  id: string | number;
  cluster_id: string;
  started_at: Date;
  last_seen_at: Date;
  digest: string;
  sample: TelemetrySample;
}

/** The SQL of the telemetry series (migrations/003_telemetry.ts). */
export class TelemetryStore {
  constructor(private readonly knex: Knex) {}

  private table() {
    return this.knex.withSchema(SCHEMA).table('telemetry');
  }

  /**
   * Records a report: an unchanged one extends the cluster's latest row (unless the agent was silent
   * longer than `gapMs`: the gap must show); a changed one starts a row, or replaces the latest row's
   * sample when that row is less than a minute old. One statement each; no transaction held.
   */
  async record(clusterId: string, sample: TelemetrySample, gapMs: number, now = new Date()): Promise<void> {
    const digest = createHash('sha256').update(JSON.stringify(sample)).digest('hex');
    const latest = (await this.table().where({ cluster_id: clusterId }).orderBy('started_at', 'desc').first('id', 'started_at', 'last_seen_at', 'digest')) as
      Omit<StoredRow, 'sample' | 'cluster_id'> | undefined;
    const silentFor = latest ? now.getTime() - latest.last_seen_at.getTime() : Infinity;
    if (latest && silentFor <= gapMs && latest.digest === digest) {
      await this.table().where({ id: latest.id }).update({ last_seen_at: now });
      return;
    }
    if (latest && silentFor <= gapMs && now.getTime() - latest.started_at.getTime() < MIN_ROW_MS) {
      await this.table()
        .where({ id: latest.id })
        .update({ last_seen_at: now, digest, sample: JSON.stringify(sample) });
      return;
    }
    await this.table().insert({ cluster_id: clusterId, started_at: now, last_seen_at: now, digest, sample: JSON.stringify(sample) });
  }

  /** The rows of these clusters that overlap [from, to), in start order, without their GPUs (read with `gpus`). */
  async rows(clusterIds: readonly string[], from: Date, to: Date): Promise<TelemetryRow[]> {
    if (clusterIds.length === 0) return [];
    const rows = (await this.table()
      .whereIn('cluster_id', [...clusterIds])
      .where('started_at', '<', to)
      .where('last_seen_at', '>=', from)
      .orderBy([{ column: 'cluster_id' }, { column: 'started_at' }])
      .select('id', 'cluster_id', 'started_at', 'last_seen_at', this.knex.raw(`sample - 'gpus' as sample`))) as StoredRow[];
    return rows.map((r) => ({ id: String(r.id), clusterId: r.cluster_id, startedAt: r.started_at, lastSeenAt: r.last_seen_at, sample: r.sample }));
  }

  /** The GPUs of these rows, by row id. */
  async gpus(rowIds: readonly string[]): Promise<Map<string, GpuMetricValue[]>> {
    const rows = (await this.table()
      .whereIn('id', [...rowIds])
      .select('id', this.knex.raw(`sample -> 'gpus' as gpus`))) as { id: string | number; gpus: GpuMetricValue[] | null }[];
    return new Map(rows.map((r) => [String(r.id), r.gpus ?? []]));
  }

  /** Retention: deletes the rows whose last report is older than `cutoff`, and only those; how many. */
  async deleteOlderThan(cutoff: Date): Promise<number> {
    const deleted = (await this.table().where('last_seen_at', '<', cutoff).delete().returning('id')) as unknown[];
    return deleted.length;
  }
}
