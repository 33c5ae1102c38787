import { describe, expect, it } from 'vitest';
import type { ScalerSettings } from '../lib/config.js';
import { loadConfig } from '../lib/config.js';
import { decideReplicas, InFlightGauge } from './autoscaler.js';

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
