import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chartGrid, lineChart, niceTicks, PALETTE, type Panel, type Series } from '../src/svg-chart.js';

const OPTIONS = { title: 'Reward', xLabel: 'round', yLabel: 'reward' };
const line = (label: string, ys: number[], extra: Partial<Series> = {}): Series => ({
  label,
  points: ys.map((y, x) => ({ x, y })),
  ...extra,
});

/** The `d` of every data path (the axis frame is a path too, but is not clipped to the plot). */
const dataPaths = (svg: string) => [...svg.matchAll(/<path d="([^"]*)"[^>]*clip-path=/g)].map((m) => m[1]);
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
const yTickLabels = (svg: string) => [...svg.matchAll(/<text[^>]*text-anchor="end">([^<]*)</g)].map((m) => m[1]);

/** Tags nest and close, and no text or attribute holds a raw '<' or a bare '&'. */
function expectWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const [, close, name, selfClose] of svg.matchAll(/<(\/?)([a-zA-Z]+)(?:\s[^<>]*?)?(\/?)>/g)) {
    if (close) expect(stack.pop()).toBe(name);
    else if (!selfClose) stack.push(name as string);
  }
  expect(stack).toEqual([]);
  const stripped = svg.replace(/<\/?[a-zA-Z]+(\s[^<>]*?)?\/?>/g, '');
  expect(stripped).not.toMatch(/[<>]/);
  expect(svg).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)/);
}

describe('lineChart', () => {
  it('is one well-formed standalone SVG document with title, axis titles and legend', () => {
    const svg = lineChart([line('mean', [0.1, 0.4, 0.8]), line('baseline', [0.2, 0.2, 0.2])], OPTIONS);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="800" height="450"')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expectWellFormed(svg);
    expect(texts(svg)).toEqual(expect.arrayContaining(['Reward', 'round', 'reward', 'mean', 'baseline']));
    expect(dataPaths(svg)).toHaveLength(2);
  });

  it('escapes every piece of text', () => {
    const nasty = `a<b & "c" 'd'>`;
    const svg = lineChart([line(nasty, [1, 2])], { title: nasty, xLabel: nasty, yLabel: nasty });
    expectWellFormed(svg);
    // <title>, the heading, both axis labels and the legend.
    expect(svg.split('a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;')).toHaveLength(6);
    expect(svg).not.toContain('a<b');
  });

  it("lists each series in the legend except those labelled '_…', and none with legend: false", () => {
    const series = [line('_node 1', [1, 2]), line('_node 2', [2, 3]), line('swarm mean', [1.5, 2.5])];
    const svg = lineChart(series, OPTIONS);
    expect(texts(svg)).toContain('swarm mean');
    expect(svg).not.toContain('node 1');
    expect(dataPaths(svg)).toHaveLength(3);
    expect(texts(lineChart(series, { ...OPTIONS, legend: false }))).not.toContain('swarm mean');
  });

  it('takes palette colours in order for series without one', () => {
    const svg = lineChart([line('a', [1, 2]), line('b', [1, 2], { color: '#123456' }), line('c', [1, 2])], OPTIONS);
    const strokes = [...svg.matchAll(/<path d="[^"]*" fill="none" stroke="([^"]*)"[^>]*clip-path=/g)].map((m) => m[1]);
    expect(strokes).toEqual([PALETTE[0], '#123456', PALETTE[1]]);
  });

  it('draws dashed, wide and translucent series as asked', () => {
    const svg = lineChart([line('a', [1, 2], { dashed: true, width: 1.5, opacity: 0.3 })], OPTIONS);
    expect(svg).toContain('stroke-width="1.5" stroke-dasharray="4.5 3" stroke-opacity="0.3"');
  });

  it('breaks a line at every non-finite point', () => {
    const gaps = (ys: number[]) => dataPaths(lineChart([line('a', ys)], OPTIONS));
    expect(gaps([1, 2, 3, 4])).toHaveLength(1);
    expect(gaps([1, 2, Number.NaN, 4, 5])).toHaveLength(2);
    expect(gaps([Number.NaN, 1, 2, Number.POSITIVE_INFINITY, Number.NaN, 3, 4, Number.NaN])).toHaveLength(2);
    // A lone point between gaps is still drawn, as a dot.
    expect(gaps([1, 2, Number.NaN, 3, Number.NaN, 4, 5])).toEqual([
      expect.stringMatching(/^M\S+ \S+ L\S+ \S+$/),
      expect.stringMatching(/^M\S+ \S+ h0$/),
      expect.stringMatching(/^M\S+ \S+ L\S+ \S+$/),
    ]);
    const badX = { label: 'a', points: [0, 1, Number.NaN, 3].map((x) => ({ x, y: x })) };
    expect(dataPaths(lineChart([badX], OPTIONS))).toHaveLength(2);
  });

  it('renders empty series and an empty chart as bare axes', () => {
    for (const series of [[], [line('a', [])], [line('a', [Number.NaN, Number.NaN])]]) {
      const svg = lineChart(series, OPTIONS);
      expectWellFormed(svg);
      expect(dataPaths(svg)).toEqual([]);
      expect(yTickLabels(svg)).toEqual(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    }
    expect(dataPaths(lineChart([line('flat', [3, 3, 3])], OPTIONS))).toHaveLength(1);
  });

  it('uses nice y ticks within yMin..yMax', () => {
    const ticks = (yMin: number, yMax: number) => yTickLabels(lineChart([], { ...OPTIONS, yMin, yMax }));
    expect(ticks(0, 1)).toEqual(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    expect(ticks(0, 0.73)).toEqual(['0.0', '0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7']);
    expect(ticks(-3, 1250)).toEqual(['0', '250', '500', '750', '1000', '1250']);
    expect(ticks(0, 0.5)).toEqual(['0.0', '0.1', '0.2', '0.3', '0.4', '0.5']);
    expect(() => lineChart([], { ...OPTIONS, yMin: 1, yMax: 1 })).toThrow(RangeError);
    // One bound given: the other comes from the data.
    expect(yTickLabels(lineChart([line('a', [2, 3])], { ...OPTIONS, yMin: 0 })).join(' ')).toBe(
      '0.0 0.5 1.0 1.5 2.0 2.5 3.0',
    );
    expect(yTickLabels(lineChart([line('a', [2, 3])], { ...OPTIONS, yMax: 10 }))).toEqual(['2', '4', '6', '8', '10']);
  });

  it('is byte-identical across calls and prints coordinates with at most two decimals', () => {
    const series = [line('a', [0.123456, 1 / 3, 2 / 7, Number.NaN, Math.PI]), line('_b', [1e-9, 0.5, 0.9])];
    const svg = lineChart(series, { ...OPTIONS, width: 613.3333, height: 401.777 });
    expect(lineChart(series, { ...OPTIONS, width: 613.3333, height: 401.777 })).toBe(svg);
    const attributes = [...svg.matchAll(/="([^"]*)"/g)].map((m) => m[1]).join(' ');
    expect(attributes).not.toMatch(/\d\.\d{3}/);
    expect(attributes).not.toMatch(/e-|NaN|Infinity/);
  });
});

describe('niceTicks', () => {
  it.each([
    [0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1]],
    [0, 0.73, [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]],
    [-3, 1250, [0, 250, 500, 750, 1000, 1250]],
    [0, 49, [0, 10, 20, 30, 40]],
    [-0.05, 1.05, [0, 0.2, 0.4, 0.6, 0.8, 1]],
  ])('[%d, %d] -> %j', (lo, hi, expected) => {
    const axis = niceTicks(lo, hi);
    expect(axis.ticks.map((t) => Number(t.toFixed(axis.decimals)))).toEqual(expected);
    expect([axis.lo, axis.hi]).toEqual([lo, hi]);
  });

  it('rejects an empty or non-finite range', () => {
    expect(() => niceTicks(1, 1)).toThrow(RangeError);
    expect(() => niceTicks(0, Number.NaN)).toThrow(RangeError);
  });

  it('widens the range to the next ticks only when no 5-8 fit inside it', () => {
    const axis = niceTicks(0.1, 4.7);
    expect([axis.lo, axis.hi, axis.ticks]).toEqual([0, 5, [0, 1, 2, 3, 4, 5]]);
  });

  it('always gives 5-8 ticks at a 1, 2, 2.5 or 5 × 10^k step, covering the range', () => {
    const finite = { noNaN: true, noDefaultInfinity: true };
    fc.assert(
      fc.property(
        fc.double({ min: -1e6, max: 1e6, ...finite }),
        fc.double({ min: 1e-6, max: 1e6, ...finite }),
        (lo, span) => {
          const hi = lo + span;
          // Ranges narrower than a millionth of their magnitude are past what doubles can tick.
          fc.pre(span > Math.abs(lo) * 1e-6);
          const { lo: axisLo, hi: axisHi, ticks, decimals } = niceTicks(lo, hi);
          expect(ticks.length).toBeGreaterThanOrEqual(5);
          expect(ticks.length).toBeLessThanOrEqual(8);
          const step = (ticks[1] as number) - (ticks[0] as number);
          // Covers the range, up to the rounding that lets a bound within a hair of a tick count as on it.
          expect(axisLo).toBeLessThanOrEqual(lo + step * 1e-6);
          expect(axisHi).toBeGreaterThanOrEqual(hi - step * 1e-6);
          const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
          expect([1, 2, 2.5, 5].some((m) => Math.abs(mantissa - m) < 1e-3)).toBe(true);
          for (const t of ticks) {
            expect(t).toBeGreaterThanOrEqual(axisLo - step * 1e-6);
            expect(t).toBeLessThanOrEqual(axisHi + step * 1e-6);
            // The label's decimals print each tick exactly.
            expect(Math.abs(Number(t.toFixed(decimals)) - t)).toBeLessThan(step * 1e-3);
          }
        },
      ),
      { numRuns: 5_000 },
    );
  });
});

/** Mulberry32: a tiny seeded generator, so the example is the same on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Three I/J configs × 4 nodes × 50 rounds of noisy rising reward, one panel per config. */
function examplePanels(): Panel[] {
  const next = random(7);
  return [
    [8, 0],
    [4, 4],
    [0, 8],
  ].map(([own, shared], c) => {
    const nodes = Array.from({ length: 4 }, (_, n) =>
      Array.from({ length: 50 }, (_, round) => {
        // One node drops out for a few rounds, to show a gap.
        if (n === 3 && round >= 20 && round < 24) return Number.NaN;
        const curve = 0.15 + 0.7 * (1 - Math.exp(-round / (8 + 6 * c)));
        return Math.min(1, Math.max(0, curve + (next() - 0.5) * 0.25));
      }),
    );
    const mean = nodes[0]?.map((_, round) => {
      const ys = nodes.map((ys) => ys[round] as number).filter(Number.isFinite);
      return ys.reduce((a, b) => a + b, 0) / ys.length;
    });
    return {
      series: [
        ...nodes.map((ys, n) => line(`_node ${n}`, ys, { width: 1, opacity: 0.45 })),
        line('swarm mean', mean ?? [], { color: '#000000', width: 2.5 }),
        line('solo baseline', new Array(50).fill(0.5), { color: '#777777', width: 1.5, dashed: true }),
      ],
      options: { ...OPTIONS, title: `I=${own}, J=${shared}`, width: 480, height: 320, yMin: 0, yMax: 1 },
    };
  });
}

describe('chartGrid', () => {
  it('lays panels out in rows of `columns`, each with its own clip path', () => {
    const panels = examplePanels();
    const svg = chartGrid(panels, 2);
    expectWellFormed(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="960" height="640"')).toBe(true);
    expect([...svg.matchAll(/<g transform="translate\(([^)]*)\)">/g)].map((m) => m[1])).toEqual([
      '0 0',
      '480 0',
      '0 320',
    ]);
    expect(new Set([...svg.matchAll(/<clipPath id="([^"]*)"/g)].map((m) => m[1])).size).toBe(3);
    // Six series per panel, and node 3's dropout splits its line in two.
    expect(dataPaths(svg)).toHaveLength(3 * 7);
    expect(chartGrid(panels, 2)).toBe(svg);
  });

  it('handles no panels, and rejects a bad column count', () => {
    expect(chartGrid([], 3)).toContain('width="0" height="0"');
    expect(() => chartGrid(examplePanels(), 0)).toThrow(RangeError);
    expect(() => chartGrid(examplePanels(), 1.5)).toThrow(RangeError);
  });

  it('renders the realistic example (3 configs side by side) to a file', () => {
    const svg = chartGrid(examplePanels(), 3);
    const file = join(tmpdir(), 'svg-chart-example.svg');
    writeFileSync(file, svg);
    expectWellFormed(svg);
    expect(svg).toContain('width="1440" height="320"');
    expect(texts(svg)).toEqual(expect.arrayContaining(['I=8, J=0', 'I=4, J=4', 'I=0, J=8', 'swarm mean']));
  });
});
