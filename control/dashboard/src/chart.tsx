// A uPlot line chart of flows per second. The chart is made once and given
// new data on every render (uPlot redraws in place, cheaply).

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const HEIGHT = 200;

export function TrafficChart({ x, y }: { x: number[]; y: number[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(el.clientWidth, 200);
    const chart = new uPlot(
      {
        width: width(),
        height: HEIGHT,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] } },
        axes: [{}, { label: 'flows/s', size: 50 }],
        series: [{}, { label: 'flows/s', stroke: '#2563eb', fill: 'rgba(37, 99, 235, 0.12)', width: 2 }],
      },
      [x, y],
      el,
    );
    plot.current = chart;
    const resize = new ResizeObserver(() => chart.setSize({ width: width(), height: HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData([x, y]);
  });

  return <div id="traffic-chart" ref={box} />;
}
