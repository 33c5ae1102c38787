import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ScalerSettings } from '../lib/config.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import type { ScalingSchedule } from '../lib/scalingSchedule.js';
import { createAutoscaler, decideReplicas, InFlightGauge } from './autoscaler.js';
import type { ActiveModel, RuntimeHost } from './executor.js';

const settings: ScalerSettings = {
  targetInFlight: 4,
  minReplicas: 1,
  maxReplicas: 8,
  maxScaleUpRate: 3,
  maxScaleDownRate: 0.5,
  metricsWindowSeconds: 60,
  scaleToZeroGraceSeconds: 600,
};

describe('decideReplicas: one step of the builtin scaler', () => {
  it('carries the average in flight at the target per replica, within min and max', () => {
    expect(decideReplicas(settings, 2, 8, 0)).toMatchObject({ replicas: 2, reason: expect.stringContaining('8.00 in flight') });
    expect(decideReplicas(settings, 2, 12.5, 0).replicas).toBe(4);
    expect(decideReplicas(settings, 4, 1000, 0).replicas).toBe(8);
    expect(decideReplicas(settings, 1, 0, 0).replicas).toBe(1);
    expect(decideReplicas({ ...settings, minReplicas: 3 }, 3, 0, 0).replicas).toBe(3);
  });

  it('limits a step up to ceil(current × maxScaleUpRate) and a step down to floor(current × maxScaleDownRate)', () => {
    expect(decideReplicas(settings, 1, 100, 0)).toMatchObject({ replicas: 3, reason: expect.stringMatching(/^scaled up/) });
    expect(decideReplicas({ ...settings, maxScaleUpRate: 1.5 }, 2, 100, 0).replicas).toBe(3);
    expect(decideReplicas(settings, 8, 4, 0)).toMatchObject({ replicas: 4, reason: expect.stringMatching(/^scaled down/) });
    expect(decideReplicas(settings, 4, 0, 0).replicas).toBe(2);
    // A rate of 1 never scales down.
    expect(decideReplicas({ ...settings, maxScaleDownRate: 1 }, 4, 0, 0).replicas).toBe(4);
  });

  it('goes to zero only with minReplicas 0 and after the grace period; holds one replica until then', () => {
    const toZero = { ...settings, minReplicas: 0 };
    expect(decideReplicas(toZero, 1, 0, 599).replicas).toBe(1);
    expect(decideReplicas(toZero, 4, 0, 10).replicas).toBe(2);
    expect(decideReplicas(toZero, 2, 0, 10).replicas).toBe(1);
    expect(decideReplicas(toZero, 3, 0, 600)).toEqual({ replicas: 0, reason: 'scaled to zero: no request for 600 s' });
    expect(decideReplicas(toZero, 0, 0, 5000).replicas).toBe(0);
    expect(decideReplicas(settings, 1, 0, 5000).replicas).toBe(1);
    // Demand at zero replicas: one at once, then the usual steps.
    expect(decideReplicas(toZero, 0, 20, 0).replicas).toBe(1);
  });

  it('brings a count outside [min, max] (settings changed) back inside', () => {
    expect(decideReplicas({ ...settings, maxReplicas: 2 }, 10, 100, 0).replicas).toBe(2);
  });
});

describe('InFlightGauge', () => {
  it('averages the requests in flight over time, so a short request between two reads still counts', () => {
    const gauge = new InFlightGauge(0);
    gauge.add(1, 100);
    gauge.add(-1, 200);
    // One request for 100 ms of 1000: 0.1 on average, though none is in flight at the read.
    expect(gauge.read(1000)).toBeCloseTo(0.1);
    gauge.add(1, 1000);
    gauge.add(1, 1500);
    expect(gauge.read(2000)).toBeCloseTo(1.5);
    expect(gauge.inFlight).toBe(2);
    expect(gauge.idleSeconds(5000)).toBe(0);
    gauge.add(-1, 2500);
    gauge.add(-1, 3000);
    expect(gauge.idleSeconds(5000)).toBe(2);
  });
});

describe('autoscaler settings', () => {
  it('reads defaults and per-model overrides from the environment, refusing bad values with the variable named', () => {
    const config = loadConfig({
      MARINER_AUTOSCALER_ENABLED: 'true',
      MARINER_AUTOSCALER_MIN_REPLICAS: '0',
      MARINER_AUTOSCALER_TARGET_IN_FLIGHT: '2.5',
      MARINER_AUTOSCALER_MODELS: JSON.stringify({ 'big-model': { maxReplicas: 16, scaleToZeroGraceSeconds: 60 } }),
    }).autoscaler;
    expect(config).toMatchObject({
      enabled: true,
      defaults: { minReplicas: 0, maxReplicas: 4, targetInFlight: 2.5 },
      models: { 'big-model': { maxReplicas: 16, scaleToZeroGraceSeconds: 60 } },
    });
    expect(loadConfig({}).autoscaler.enabled).toBe(false);
    expect(() => loadConfig({ MARINER_AUTOSCALER_MAX_SCALE_DOWN_RATE: '2' })).toThrow(
      /MARINER_AUTOSCALER_MAX_SCALE_DOWN_RATE must be a number between 0 and 1/,
    );
    expect(() => loadConfig({ MARINER_AUTOSCALER_MIN_REPLICAS: '5', MARINER_AUTOSCALER_MAX_REPLICAS: '2' })).toThrow(/must not exceed/);
    expect(() => loadConfig({ MARINER_AUTOSCALER_MODELS: '{"m":{"replicas":2}}' })).toThrow(/"m"\]\.replicas is not a scaler setting/);
    expect(() => loadConfig({ MARINER_AUTOSCALER_MODELS: '{"m":{"minReplicas":1.5}}' })).toThrow(/must be an integer/);
    expect(() => loadConfig({ MARINER_AUTOSCALER_MODELS: '[1]' })).toThrow(/JSON object/);
  });
});

describe('scaling schedules: replicas bounded by the schedule in force', () => {
  const workingHours = [
    { cron: '0 9 * * MON-FRI', timeZone: 'Europe/Berlin', minReplicas: 2, maxReplicas: 4, onDemand: false },
    { cron: '0 19 * * MON-FRI', timeZone: 'Europe/Berlin', minReplicas: 0, maxReplicas: 0, onDemand: false },
  ];
  const model: ActiveModel = { id: 'm', source: 's3://m', formats: ['gguf'], gpu: 0, replicas: 1, extraArgs: [] };

  /** An autoscaler over a host that records the replicas it is given, on a clock the test moves. */
  function scaled(schedules: ScalingSchedule[], start: string) {
    let now = Date.parse(start);
    const given: number[] = [];
    let scales = 0;
    const host: RuntimeHost = {
      async reconcile(active) {
        given.push(active[0]!.replicas);
      },
      async status() {
        return [{ modelId: 'm', desiredReplicas: given.at(-1) ?? 0, readyReplicas: 0, inFlightRequests: 0, statusMessage: '' }];
      },
      forward() {},
      async close() {},
    };
    const autoscaler = createAutoscaler(
      host,
      { enabled: true, syncPeriodMs: 1000, defaults: { ...settings, minReplicas: 0 }, models: {}, schedules: { m: schedules } },
      silentLogger(),
      () => scales++,
      () => now,
    );
    return {
      autoscaler,
      given,
      scales: () => scales,
      at: (iso: string) => {
        now = Date.parse(iso);
        vi.advanceTimersByTime(1000);
      },
      report: async () => (await autoscaler.status())[0]!.autoscaling!,
    };
  }

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('holds a model at zero over the weekend, refuses to wake it, and scales it to the floor when the window opens', async () => {
    // Saturday noon: the Friday 19:00 shutdown is in force until Monday 09:00 in Berlin (08:00 UTC).
    const s = scaled(workingHours, '2026-12-05T12:00:00Z');
    await s.autoscaler.reconcile([model]);
    expect(s.given).toEqual([0]);
    expect(await s.report()).toMatchObject({
      minReplicas: 0,
      maxReplicas: 0,
      schedule: { cron: '0 19 * * MON-FRI', timeZone: 'Europe/Berlin', maxReplicas: 0 },
      nextScheduleChangeAt: '2026-12-07T08:00:00.000Z',
      scheduledOffUntil: '2026-12-07T08:00:00.000Z',
    });
    // A waiting request does not start a replica during the shutdown.
    expect(s.autoscaler.wake('m')).toBe(true);
    s.at('2026-12-06T12:00:00Z');
    expect(s.scales()).toBe(0);

    // Monday 09:00 Berlin: straight to the floor of two.
    s.at('2026-12-07T08:00:20Z');
    expect(s.scales()).toBe(1);
    await s.autoscaler.reconcile([model]);
    expect(s.given.at(-1)).toBe(2);
    expect(await s.report()).toMatchObject({
      minReplicas: 2,
      maxReplicas: 4,
      schedule: { cron: '0 9 * * MON-FRI' },
      nextScheduleChangeAt: '2026-12-07T18:00:00.000Z',
      scheduledOffUntil: null,
      lastScaleReason: 'scaled up to the floor of schedule "0 9 * * MON-FRI" (Europe/Berlin)',
    });
    // Idle all day, it stays at the floor; 19:00 takes it to zero.
    s.at('2026-12-07T17:59:00Z');
    expect(s.scales()).toBe(1);
    s.at('2026-12-07T18:00:05Z');
    expect(s.scales()).toBe(2);
    await s.autoscaler.reconcile([model]);
    expect(s.given.at(-1)).toBe(0);
    expect((await s.report()).scheduledOffUntil).toBe('2026-12-08T08:00:00.000Z');
    await s.autoscaler.close();
  });

  it('an on-demand shutdown lets a request start one replica and reports no refusal', async () => {
    const s = scaled([workingHours[0]!, { ...workingHours[1]!, onDemand: true }], '2026-12-05T12:00:00Z');
    await s.autoscaler.reconcile([model]);
    expect(s.given).toEqual([0]);
    expect(await s.report()).toMatchObject({ minReplicas: 0, maxReplicas: 1, scheduledOffUntil: null, nextScheduleChangeAt: '2026-12-07T08:00:00.000Z' });
    expect(s.autoscaler.wake('m')).toBe(true);
    expect(s.scales()).toBe(1);
    await s.autoscaler.reconcile([model]);
    expect(s.given.at(-1)).toBe(1);
    await s.autoscaler.close();
  });

  it("a model's own schedules (set on the model) replace the agent's for it, and a change to them applies at the next reconciliation", async () => {
    // Saturday noon: the agent's schedules hold the model at zero over the weekend.
    const s = scaled(workingHours, '2026-12-05T12:00:00Z');
    await s.autoscaler.reconcile([model]);
    expect(s.given).toEqual([0]);
    // Its owner sets a floor of three from Saturday 10:00 UTC: in force at once, the agent's ignored.
    const own: ScalingSchedule[] = [{ cron: '0 10 * * SAT', timeZone: 'UTC', minReplicas: 3, maxReplicas: 5, onDemand: false }];
    await s.autoscaler.reconcile([{ ...model, scalingSchedules: own }]);
    expect(s.given.at(-1)).toBe(3);
    expect(await s.report()).toMatchObject({ minReplicas: 3, maxReplicas: 5, schedule: own[0], scheduledOffUntil: null });
    // Unchanged schedules change nothing; removed, the agent's apply again (the weekend shutdown).
    await s.autoscaler.reconcile([{ ...model, scalingSchedules: own }]);
    expect(s.given.at(-1)).toBe(3);
    await s.autoscaler.reconcile([{ ...model, scalingSchedules: [] }]);
    expect(s.given.at(-1)).toBe(0);
    expect((await s.report()).scheduledOffUntil).toBe('2026-12-07T08:00:00.000Z');
    await s.autoscaler.close();
  });

  it('reads schedules from MARINER_AUTOSCALER_SCHEDULES, refusing a bad one with the variable and the problem named', () => {
    const config = loadConfig({ MARINER_AUTOSCALER_SCHEDULES: JSON.stringify({ m: [{ cron: '0 9 * * 1-5', minReplicas: 1, maxReplicas: 2 }] }) }).autoscaler;
    expect(config.schedules).toEqual({ m: [{ cron: '0 9 * * 1-5', timeZone: 'UTC', minReplicas: 1, maxReplicas: 2, onDemand: false }] });
    const bad = (value: unknown) => () => loadConfig({ MARINER_AUTOSCALER_SCHEDULES: JSON.stringify(value) });
    expect(bad({ m: [{ cron: '0 9 * *', minReplicas: 0, maxReplicas: 0 }] })).toThrow(/SCHEDULES\["m"\]\[0\]: .*must have 5 fields/);
    expect(bad({ m: [{ cron: '0 9 * * *', timeZone: 'Nowhere/City', minReplicas: 0, maxReplicas: 0 }] })).toThrow(/time zone "Nowhere\/City"/);
    expect(bad({ m: [{ cron: '0 9 * * *', minReplicas: 3, maxReplicas: 1 }] })).toThrow(/minReplicas must not exceed maxReplicas/);
    expect(bad({ m: [{ cron: '0 9 * * *', minReplicas: 0, maxReplicas: 0, replicas: 1 }] })).toThrow(/\.replicas is not a schedule setting/);
    expect(bad({ m: [] })).toThrow(/list of 1 to 32 schedules/);
    expect(bad([1])).toThrow(/JSON object/);
  });
});
