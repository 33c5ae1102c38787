import 'uplot/dist/uPlot.min.css';
import { useComputedColorScheme } from '@mantine/core';
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';

const COLORS = ['#4263eb', '#2f9e44', '#e8590c', '#ae3ec9', '#1098ad', '#f08c00', '#c2255c'];

export interface LineChartProps {
  /** Shown to assistive technology (role img). */
  label: string;
  /** X values: seconds since the epoch when `time`, else plain numbers (steps). */
  x: number[];
  series: { label: string; values: (number | null)[] }[];
  time?: boolean;
  height?: number;
  /** Bars instead of lines (counts per bucket). */
  bars?: boolean;
}

/** A chart of a few series over time or steps (uPlot; a lazy chunk, loaded with the screens that draw one). */
export default function LineChart({ label, x, series, time = false, height = 200, bars = false }: LineChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const dark = useComputedColorScheme('light') === 'dark';
  const names = series.map((s) => s.label).join('\u0000');
  useEffect(() => {
    if (!box.current) return;
    const axis = { stroke: dark ? '#c1c2c5' : '#495057', grid: { stroke: dark ? '#373a40' : '#e9ecef' } };
    const paths = bars ? uPlot.paths.bars?.({ size: [0.6, 40] }) : undefined;
    // Counts and steps are whole numbers: no 0.5 requests, no step 1.2.
    const whole = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 100_000, 1_000_000];
    // Bars are centred on their x: half a bucket of room on either side, so the first and last show whole.
    const half = x.length > 1 ? (x[1]! - x[0]!) / 2 : 1;
    const plot = new uPlot(
      {
        width: box.current.clientWidth || 320,
        height,
        series: [
          { label: time ? 'time' : 'step' },
          ...series.map((s, i) => ({
            label: s.label,
            stroke: COLORS[i % COLORS.length]!,
            width: 2,
            ...(bars ? { fill: `${COLORS[i % COLORS.length]!}88`, paths, points: { show: false } } : { points: { show: x.length < 40 } }),
          })),
        ],
        axes: [time ? axis : { ...axis, incrs: whole }, bars ? { ...axis, incrs: whole } : axis],
        scales: {
          x: { time, ...(bars && x.length > 0 ? { auto: false, range: (): uPlot.Range.MinMax => [x[0]! - half, x[x.length - 1]! + half] } : {}) },
          y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max)] },
        },
        legend: { show: true },
      },
      [x, ...series.map((s) => s.values)] as uPlot.AlignedData,
      box.current,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: box.current?.clientWidth ?? 320, height }));
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
    // Rebuilt when the data changes: these charts get a new set of points at a time, not a stream.
  }, [dark, names, x, series, time, height, bars]);
  return <div ref={box} role="img" aria-label={label} />;
}
