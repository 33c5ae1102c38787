import 'uplot/dist/uPlot.min.css';
import { useComputedColorScheme } from '@mantine/core';
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';

/** One point per runtimes event: when, and the model's ready replicas summed over its clusters. */
export interface ReplicaPoint {
  time: number;
  ready: number;
  desired: number;
}

/** A small chart of a model's ready and desired replicas over time (uPlot; loaded with the models page only). */
export default function ReplicasChart({ points, label }: { points: ReplicaPoint[]; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const dark = useComputedColorScheme('light') === 'dark';
  useEffect(() => {
    if (!box.current) return;
    const axis = { stroke: dark ? '#c1c2c5' : '#495057', grid: { stroke: dark ? '#373a40' : '#e9ecef' } };
    const steps = uPlot.paths.stepped?.({ align: 1 });
    plot.current = new uPlot(
      {
        width: box.current.clientWidth || 320,
        height: 140,
        // Steps: a count holds from one report until the next, it does not slide between them.
        series: [
          {},
          { label: 'ready', stroke: '#2f9e44', width: 2, points: { show: true }, paths: steps },
          { label: 'desired', stroke: '#4263eb', dash: [4, 4], points: { show: true }, paths: steps },
        ],
        axes: [axis, { ...axis, incrs: [1, 2, 5, 10] }],
        scales: { x: { time: true, auto: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        legend: { show: true },
      },
      [[], [], []],
      box.current,
    );
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: box.current?.clientWidth ?? 320, height: 140 }));
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [dark]);
  useEffect(() => {
    const chart = plot.current;
    if (!chart || points.length === 0) return;
    chart.setData([points.map((p) => p.time / 1000), points.map((p) => p.ready), points.map((p) => p.desired)]);
    // At least the last two minutes: a page that just opened has one point.
    const last = points[points.length - 1]!.time / 1000;
    chart.setScale('x', { min: Math.min(points[0]!.time / 1000, last - 120), max: last + 5 });
  }, [points, dark]);
  return <div ref={box} role="img" aria-label={`Replicas of ${label} over time`} />;
}
