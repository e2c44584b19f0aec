/**
 * Gossipsub's metrics (mesh sizes, scores, deliveries, rejections by reason) exported through the
 * node's Prometheus registry. Gossipsub asks for a small MetricsRegister (gauges, histograms and
 * avg/min/max sets); this adapts prom-client to it.
 */
import type { MetricsRegister } from '@libp2p/gossipsub/metrics';
import { Gauge, Histogram, type Registry } from 'prom-client';

type Labels = Record<string, string | number>;
interface Config {
  name: string;
  help: string;
  labelNames?: string[];
  buckets?: number[];
}

/** Calls with labels pass them first; calls without pass only the value. */
const split = (args: unknown[]): [Labels, ...unknown[]] =>
  typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])
    ? (args as [Labels, ...unknown[]])
    : [{}, ...args];

export function gossipMetricsRegister(registry: Registry): MetricsRegister {
  // Gossipsub sets most gauges from one collector (on its cache-size gauge); prom-client collects
  // metric by metric while it writes them, so without this the earlier ones would show the previous
  // scrape. Every gauge's collect runs all collectors, at most once per scrape.
  const collectors: (() => void)[] = [];
  let collectedAt = 0;
  const collectAll = () => {
    if (Date.now() - collectedAt < 100) return;
    collectedAt = Date.now();
    for (const collect of collectors) collect();
  };
  const register: Record<'gauge' | 'histogram' | 'avgMinMax', (config: Config) => unknown> = {
    gauge(config) {
      const gauge: Gauge<string> = new Gauge({
        name: config.name,
        help: config.help,
        labelNames: config.labelNames ?? [],
        registers: [registry],
        collect: collectAll,
      });
      const view = {
        inc: (...args: unknown[]) => {
          const [labels, value] = split(args);
          gauge.inc(labels, (value as number | undefined) ?? 1);
        },
        set: (...args: unknown[]) => {
          const [labels, value] = split(args);
          gauge.set(labels, value as number);
        },
        addCollect: (collect: (metric: unknown) => void) => collectors.push(() => collect(view)),
      };
      return view;
    },
    histogram(config) {
      const histogram = new Histogram({
        name: config.name,
        help: config.help,
        labelNames: config.labelNames ?? [],
        ...(config.buckets === undefined ? {} : { buckets: config.buckets }),
        registers: [registry],
      });
      return {
        startTimer: () => histogram.startTimer(),
        observe: (...args: unknown[]) => {
          const [labels, value] = split(args);
          histogram.observe(labels, value as number);
        },
        reset: () => histogram.reset(),
      };
    },
    avgMinMax(config) {
      const gauge = new Gauge({
        name: config.name,
        help: `${config.help} (stat: avg, min, max)`,
        labelNames: [...(config.labelNames ?? []), 'stat'],
        registers: [registry],
      });
      return {
        set: (...args: unknown[]) => {
          const [labels, values] = split(args) as [Labels, number[]];
          if (values.length === 0) return;
          gauge.set({ ...labels, stat: 'avg' }, values.reduce((a, b) => a + b, 0) / values.length);
          gauge.set({ ...labels, stat: 'min' }, Math.min(...values));
          gauge.set({ ...labels, stat: 'max' }, Math.max(...values));
        },
      };
    },
  };
  return register as unknown as MetricsRegister;
}
