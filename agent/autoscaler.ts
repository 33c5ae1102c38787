import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { AutoscalerConfig, ScalerSettings } from '../lib/config.js';
import type { Logger } from '../lib/logging.js';
import { ModelSchedules, scheduledBounds, type ScheduleState } from '../lib/scalingSchedule.js';
import type { ActiveModel, AutoscalingReport, RuntimeHost, RuntimeReport } from './executor.js';

/**
 * Requests in flight to one model through this agent, and their time-weighted average between two
 * reads: a request of 100 ms between two ticks still counts for its share, which a count sampled at
 * each tick would miss.
 */
export class InFlightGauge {
  private current = 0;
  private area = 0;
  private since: number;
  private changedAt: number;
  /** When the model last had a request in flight (or was created). */
  lastActiveAt: number;

  constructor(now: number) {
    this.since = now;
    this.changedAt = now;
    this.lastActiveAt = now;
  }

  get inFlight(): number {
    return this.current;
  }

  add(delta: 1 | -1, now: number): void {
    this.area += this.current * (now - this.changedAt);
    this.changedAt = now;
    this.current = Math.max(0, this.current + delta);
    this.lastActiveAt = now;
  }

  /** The average in flight since the previous read (the count now when no time has passed). */
  read(now: number): number {
    const area = this.area + this.current * (now - this.changedAt);
    const average = now > this.since ? area / (now - this.since) : this.current;
    this.area = 0;
    this.since = now;
    this.changedAt = now;
    return average;
  }

  /** Seconds without a request in flight (0 while one is). */
  idleSeconds(now: number): number {
    return this.current > 0 ? 0 : Math.max(0, (now - this.lastActiveAt) / 1000);
  }
}

/** The replicas one step of the scaler sets, and why. */
export interface ScaleDecision {
  replicas: number;
  reason: string;
}

const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));

/**
 * One step of the builtin scaler (LLMariner engine autoscaler, reference §1 "Autoscaling"): the
 * replicas that carry the average in-flight requests at `targetInFlight` each, within
 * [minReplicas, maxReplicas]; a step up goes to at most ceil(current × maxScaleUpRate) (at least 1),
 * a step down keeps at least floor(current × maxScaleDownRate). Zero replicas only when minReplicas
 * is 0 and the model has been idle for the grace period; until then it holds one. Scaling to zero
 * after the grace period is not rate-limited: nothing is in flight.
 */
export function decideReplicas(settings: ScalerSettings, current: number, averageInFlight: number, idleSeconds: number): ScaleDecision {
  const load = `${averageInFlight.toFixed(2)} in flight on average, target ${settings.targetInFlight} per replica`;
  // The small epsilon keeps 8.000000001 / 4 from asking for a third replica.
  let wanted = clamp(Math.ceil(averageInFlight / settings.targetInFlight - 1e-9), settings.minReplicas, settings.maxReplicas);
  if (wanted === 0) {
    if (current === 0) return { replicas: 0, reason: 'scaled to zero: no requests' };
    if (idleSeconds >= settings.scaleToZeroGraceSeconds) return { replicas: 0, reason: `scaled to zero: no request for ${Math.floor(idleSeconds)} s` };
    wanted = 1;
  }
  if (wanted > current) wanted = Math.min(wanted, Math.max(1, Math.ceil(current * settings.maxScaleUpRate)));
  if (wanted < current) wanted = Math.max(wanted, Math.floor(current * settings.maxScaleDownRate));
  wanted = clamp(wanted, Math.min(1, settings.maxReplicas), settings.maxReplicas);
  if (wanted > current) return { replicas: wanted, reason: `scaled up: ${load}` };
  if (wanted < current) return { replicas: wanted, reason: `scaled down: ${load}` };
  return { replicas: current, reason: load };
}

interface ModelScaler {
  /** The configured settings; `settings` is them within the schedule in force. */
  base: ScalerSettings;
  settings: ScalerSettings;
  schedules: ModelSchedules | null;
  schedule: ScheduleState | null;
  replicas: number;
  gauge: InFlightGauge;
  samples: { at: number; value: number }[];
  averageInFlight: number;
  lastScaledAt: number | null;
  lastReason: string | null;
}

/** A RuntimeHost whose replica counts the autoscaler decides. */
export interface AutoscaledRuntimeHost extends RuntimeHost {
  /**
   * A request for the model is waiting at the control plane and no replica is ready: scale from
   * zero now, without waiting for the next step. False when this agent does not run the model.
   */
  wake(modelId: string): boolean;
}

/**
 * The builtin autoscaler of one agent's inference runtimes, around the executor's RuntimeHost: the
 * active models reach the host with the replicas the scaler decided instead of their configured
 * count, and every `syncPeriodMs` each model's count is decided again from the requests this agent
 * forwarded to it (every request to a runtime of this cluster goes through here). When a count
 * changes, `onScale` runs a reconciliation, which applies it (Kubernetes: the StatefulSet's scale
 * subresource; local: processes) and reports it. The scaler's state goes out with each runtime's
 * report (`autoscaling`).
 *
 * After an agent restart, a runtime that exists keeps its replicas (`currentReplicas`); a model new to
 * the cluster starts with its configured replicas, at least one (it was activated for a reason).
 */
export function createAutoscaler(
  inner: RuntimeHost,
  config: AutoscalerConfig,
  logger: Logger,
  onScale: () => void,
  clock: () => number = Date.now,
): AutoscaledRuntimeHost {
  const scalers = new Map<string, ModelScaler>();
  const log = logger.child({ component: 'autoscaler' });

  const settingsOf = (modelId: string): ScalerSettings => ({ ...config.defaults, ...config.models[modelId] });
  /** The model's own schedules (set on the model) where it has any, else the agent's configured ones. */
  const schedulesOf = (model: ActiveModel): ModelSchedules | null => {
    const schedules = model.scalingSchedules && model.scalingSchedules.length > 0 ? model.scalingSchedules : config.schedules?.[model.id];
    return schedules && schedules.length > 0 ? new ModelSchedules(schedules) : null;
  };

  /**
   * A model whose owner changed its schedules since the scaler took them: the new ones apply at once
   * (a shutdown, a floor), the others at the next step; without any, the configured bounds again.
   */
  function followSchedules(model: ActiveModel, scaler: ModelScaler, now: number): boolean {
    const schedules = schedulesOf(model);
    if (JSON.stringify(schedules?.schedules ?? null) === JSON.stringify(scaler.schedules?.schedules ?? null)) return false;
    scaler.schedules = schedules;
    scaler.schedule = null;
    scaler.settings = scaler.base;
    const decision = applySchedule(scaler, now);
    if (decision && decision.replicas !== scaler.replicas) scaleTo(model.id, scaler, decision);
    return true;
  }

  /**
   * The schedule in force bounds the replicas: its [minReplicas, maxReplicas] replace the configured
   * ones. Returns a decision when the schedule alone decides (a shutdown, or a floor above the count).
   */
  function applySchedule(scaler: ModelScaler, now: number): ScaleDecision | null {
    if (!scaler.schedules) return null;
    const state = scaler.schedules.state(now);
    scaler.schedule = state;
    if (!state.active) {
      scaler.settings = scaler.base;
      return null;
    }
    scaler.settings = { ...scaler.base, ...scheduledBounds(state.active) };
    const by = `schedule "${state.active.cron}" (${state.active.timeZone})`;
    // A shutdown; an on-demand one (maxReplicas 1) is left to the scaler: requests start a replica,
    // idleness takes it away.
    if (scaler.settings.maxReplicas === 0) return scaler.replicas === 0 ? null : { replicas: 0, reason: `scaled to zero: ${by}` };
    if (scaler.replicas < scaler.settings.minReplicas) return { replicas: scaler.settings.minReplicas, reason: `scaled up to the floor of ${by}` };
    if (scaler.replicas > scaler.settings.maxReplicas) return { replicas: scaler.settings.maxReplicas, reason: `scaled down to the ceiling of ${by}` };
    return null;
  }

  function scaleTo(modelId: string, scaler: ModelScaler, decision: ScaleDecision): void {
    log.info({ modelId, from: scaler.replicas, to: decision.replicas, averageInFlight: scaler.averageInFlight }, decision.reason);
    scaler.replicas = decision.replicas;
    scaler.lastScaledAt = clock();
    scaler.lastReason = decision.reason;
  }

  function step(): void {
    const now = clock();
    let changed = false;
    for (const [modelId, scaler] of scalers) {
      scaler.samples.push({ at: now, value: scaler.gauge.read(now) });
      const windowStart = now - scaler.settings.metricsWindowSeconds * 1000;
      while (scaler.samples.length > 1 && scaler.samples[0]!.at <= windowStart) scaler.samples.shift();
      scaler.averageInFlight = scaler.samples.reduce((sum, sample) => sum + sample.value, 0) / scaler.samples.length;
      const decision = applySchedule(scaler, now) ?? decideReplicas(scaler.settings, scaler.replicas, scaler.averageInFlight, scaler.gauge.idleSeconds(now));
      if (decision.replicas !== scaler.replicas) {
        scaleTo(modelId, scaler, decision);
        changed = true;
      }
    }
    if (changed) onScale();
  }

  function wake(modelId: string): boolean {
    const scaler = scalers.get(modelId);
    if (!scaler) return false;
    scaler.gauge.lastActiveAt = clock();
    // Shut down by its schedule: the request is refused until the window opens, not served.
    if (scaler.schedules) applySchedule(scaler, clock());
    if (scaler.settings.maxReplicas === 0) return true;
    if (scaler.replicas === 0) {
      scaleTo(modelId, scaler, { replicas: Math.max(1, scaler.settings.minReplicas), reason: 'scaled up from zero: a request is waiting' });
      onScale();
    }
    return true;
  }

  const timer = setInterval(step, config.syncPeriodMs);
  timer.unref();

  function report(scaler: ModelScaler): AutoscalingReport {
    const { settings } = scaler;
    const now = clock();
    const idle = scaler.gauge.inFlight === 0;
    const scaleToZeroAt =
      settings.minReplicas === 0 && scaler.replicas > 0 && idle
        ? new Date(scaler.gauge.lastActiveAt + settings.scaleToZeroGraceSeconds * 1000).toISOString()
        : null;
    return {
      minReplicas: settings.minReplicas,
      maxReplicas: settings.maxReplicas,
      targetInFlight: settings.targetInFlight,
      averageInFlight: Math.round(scaler.averageInFlight * 1000) / 1000,
      idleSeconds: Math.floor(scaler.gauge.idleSeconds(now)),
      scaleToZeroAt,
      lastScaledAt: scaler.lastScaledAt === null ? null : new Date(scaler.lastScaledAt).toISOString(),
      lastScaleReason: scaler.lastReason,
      schedule: scaler.schedule?.active ?? null,
      nextScheduleChangeAt: scaler.schedule?.nextChangeAt == null ? null : new Date(scaler.schedule.nextChangeAt).toISOString(),
      scheduledOffUntil: scaler.schedule?.offUntil == null ? null : new Date(scaler.schedule.offUntil).toISOString(),
    };
  }

  return {
    async reconcile(active) {
      const added = active.filter((model) => !scalers.has(model.id));
      if (added.length > 0) {
        const existing = (await inner.currentReplicas?.().catch(() => undefined)) ?? new Map<string, number>();
        const now = clock();
        for (const model of added) {
          const base = settingsOf(model.id);
          const found = existing.get(model.id);
          const scaler: ModelScaler = {
            base,
            settings: base,
            schedules: schedulesOf(model),
            schedule: null,
            replicas: 0,
            gauge: new InFlightGauge(now),
            samples: [],
            averageInFlight: 0,
            lastScaledAt: null,
            lastReason: null,
          };
          const scheduled = applySchedule(scaler, now);
          const { settings } = scaler;
          scaler.replicas =
            scheduled?.replicas ??
            (found === undefined
              ? // In a scheduled shutdown (on-demand or not) a new model starts with none.
                scaler.schedule?.active?.maxReplicas === 0
                ? 0
                : clamp(model.replicas, Math.max(1, settings.minReplicas), settings.maxReplicas)
              : clamp(found, settings.minReplicas, settings.maxReplicas));
          if (scheduled) scaler.lastReason = scheduled.reason;
          const replicas = scaler.replicas;
          scalers.set(model.id, scaler);
          log.info({ modelId: model.id, replicas, adopted: found !== undefined }, 'autoscaling the model');
        }
      }
      for (const model of active) {
        const scaler = scalers.get(model.id)!;
        if (!added.includes(model)) followSchedules(model, scaler, clock());
      }
      const ids = new Set(active.map((model) => model.id));
      for (const id of [...scalers.keys()]) if (!ids.has(id)) scalers.delete(id);
      await inner.reconcile(active.map((model) => ({ ...model, replicas: scalers.get(model.id)!.replicas })));
    },

    async status(): Promise<RuntimeReport[]> {
      return (await inner.status()).map((runtime) => {
        const scaler = scalers.get(runtime.modelId);
        return scaler ? { ...runtime, autoscaling: report(scaler) } : runtime;
      });
    },

    currentReplicas: inner.currentReplicas?.bind(inner),

    forward(modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, runtimePath: string) {
      const scaler = scalers.get(modelId);
      if (scaler) {
        scaler.gauge.add(1, clock());
        res.stream.once('close', () => scaler.gauge.add(-1, clock()));
        // Routed here while scaled to zero (a stale report): the host answers 503 and the control plane
        // waits for the replica this starts.
        if (scaler.replicas === 0) wake(modelId);
      }
      inner.forward(modelId, req, res, runtimePath);
    },

    wake,

    /** Stops scaling; the host itself is the executor's to close. */
    async close() {
      clearInterval(timer);
    },
  };
}
