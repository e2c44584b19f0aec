/**
 * Dependency-free SVG line charts of learning curves and the like: the charts of `swarm-node swarm`'s
 * report and of the in-process experiment runner (scripts/experiment.ts), which imports them as
 * `@swarm-node/node/svg-chart` (no libp2p loaded).
 *
 * Output is deterministic: the same input gives a byte-identical document, with coordinates
 * rounded to two decimals, so charts can be committed and diffed.
 */

export interface Series {
  label: string;
  points: readonly { x: number; y: number }[];
  color?: string;
  width?: number;
  dashed?: boolean;
  opacity?: number;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Default 800. */
  width?: number;
  /** Default 450. */
  height?: number;
  /** Default: from the data, padded 5%. A given bound is kept unless no 5–8 nice ticks fit, then widens to the next tick. */
  yMin?: number;
  yMax?: number;
  /** Default true. Series whose label starts with '_' are never listed. */
  legend?: boolean;
}

export interface Panel {
  series: readonly Series[];
  options: ChartOptions;
}

/** Okabe–Ito, reordered so the colours easiest to tell apart on white come first (yellow last). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];

export interface Axis {
  lo: number;
  hi: number;
  ticks: number[];
  /** Decimals that print every tick exactly. */
  decimals: number;
}

const MANTISSAS = [5, 2.5, 2, 1];
// Tolerance, in steps, for a bound that is a multiple of the step up to floating-point error.
const EPS = 1e-9;

interface Step {
  size: number;
  decimals: number;
}

/** The multiples of `step` inside [lo, hi], or with `snap`, the range widened to the multiples around it. */
function ticksAt(lo: number, hi: number, { size, decimals }: Step, snap: boolean): Axis {
  const first = snap ? Math.floor(lo / size + EPS) : Math.ceil(lo / size - EPS);
  const last = snap ? Math.ceil(hi / size - EPS) : Math.floor(hi / size + EPS);
  const ticks = Array.from({ length: last - first + 1 }, (_, i) => (first + i) * size);
  return snap ? { lo: first * size, hi: last * size, ticks, decimals } : { lo, hi, ticks, decimals };
}

/**
 * 5–8 ticks at a multiple of a 1, 2, 2.5 or 5 × 10^k step: of the steps whose ticks inside [lo, hi]
 * number 5–8, the one nearest 6 ticks. When there is none, the range widens to the ticks of the
 * largest step with at least 5 (the next larger step has at most 4, so this one at most 3 × 2 + 2).
 */
export function niceTicks(lo: number, hi: number): Axis {
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo)) throw new RangeError(`no ticks for [${lo}, ${hi}]`);
  const top = Math.ceil(Math.log10(hi - lo));
  const steps: Step[] = [];
  // Steps from 5 × 10^top down to 10^(top-2): wide enough for both passes, largest first.
  for (let k = top; k >= top - 2; k--) {
    for (const m of MANTISSAS) steps.push({ size: m * 10 ** k, decimals: Math.max(0, (m === 2.5 ? 1 : 0) - k) });
  }
  const inside = steps
    .map((step) => ticksAt(lo, hi, step, false))
    .filter((a) => a.ticks.length >= 5 && a.ticks.length <= 8);
  // sort is stable, so on a tie the larger step wins.
  const best = inside.sort((a, b) => Math.abs(a.ticks.length - 6) - Math.abs(b.ticks.length - 6))[0];
  return best ?? (steps.map((step) => ticksAt(lo, hi, step, true)).find((a) => a.ticks.length >= 5) as Axis);
}

const xml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
// Math.round then String: at most two decimals, no trailing zeros, and -0 prints as 0.
const num = (n: number) => String(Math.round(n * 100) / 100);

const FONT = 12;
const CHAR_WIDTH = 7; // a generous average advance of 12px sans-serif, for layout only
const LEGEND_MAX_CHARS = 28;

/** Finite points split at every non-finite one: each run is drawn as its own path. */
function segments(points: Series['points']): { x: number; y: number }[][] {
  const runs: { x: number; y: number }[][] = [[]];
  for (const p of points) {
    if (Number.isFinite(p.x) && Number.isFinite(p.y)) runs.at(-1)?.push(p);
    else if (runs.at(-1)?.length) runs.push([]);
  }
  return runs.filter((run) => run.length > 0);
}

function extent(values: number[], pad: number): [number, number] {
  if (values.length === 0) return [0, 1];
  // reduce, not Math.min(...values): spreading a long series overflows the stack.
  const lo = values.reduce((a, b) => Math.min(a, b));
  const hi = values.reduce((a, b) => Math.max(a, b));
  if (lo === hi) return [lo - (Math.abs(lo) / 10 || 1), hi + (Math.abs(hi) / 10 || 1)];
  return [lo - (hi - lo) * pad, hi + (hi - lo) * pad];
}

function yRange(values: number[], options: ChartOptions): [number, number] {
  const [dataLo, dataHi] = extent(values, 0.05);
  const { yMin, yMax } = options;
  for (const bound of [yMin, yMax]) {
    if (bound !== undefined && !Number.isFinite(bound)) throw new RangeError(`y bound ${bound} is not finite`);
  }
  if (yMin !== undefined && yMax !== undefined && !(yMax > yMin)) throw new RangeError('yMax must exceed yMin');
  // A single given bound with all the data beyond it: keep the bound, show one unit (the data is clipped).
  if (yMin !== undefined) return [yMin, yMax ?? (dataHi > yMin ? dataHi : yMin + 1)];
  if (yMax !== undefined) return [dataLo < yMax ? dataLo : yMax - 1, yMax];
  return [dataLo, dataHi];
}

const strokeAttrs = (s: Series, color: string) =>
  `stroke="${xml(color)}" stroke-width="${num(s.width ?? 2)}"` +
  (s.dashed ? ` stroke-dasharray="${num((s.width ?? 2) * 3)} ${num((s.width ?? 2) * 2)}"` : '') +
  (s.opacity === undefined ? '' : ` stroke-opacity="${num(s.opacity)}"`);

/** One chart's elements, in a frame whose top left is (0, 0); `id` keeps clip-path ids unique in a grid. */
function chartBody(series: readonly Series[], options: ChartOptions, id: string): string[] {
  const width = options.width ?? 800;
  const height = options.height ?? 450;
  const finite = series.flatMap((s) => segments(s.points).flat());
  const xs = finite.map((p) => p.x);
  const ys = finite.map((p) => p.y);
  const x = niceTicks(...extent(xs, 0));
  const y = niceTicks(...yRange(ys, options));
  const yLabels = y.ticks.map((t) => t.toFixed(y.decimals));

  let next = 0;
  const colors = series.map((s) => s.color ?? (PALETTE[next++ % PALETTE.length] as string));
  const listed =
    options.legend === false
      ? []
      : series.map((s, i) => ({ s, color: colors[i] as string })).filter(({ s }) => !s.label.startsWith('_'));
  const clip = (label: string) =>
    label.length > LEGEND_MAX_CHARS ? `${label.slice(0, LEGEND_MAX_CHARS - 1)}…` : label;
  const longest = Math.max(0, ...listed.map(({ s }) => clip(s.label).length));
  const legendWidth = listed.length ? 40 + CHAR_WIDTH * longest : 0;

  const left = 30 + CHAR_WIDTH * Math.max(...yLabels.map((l) => l.length));
  const top = 40;
  const right = width - 20 - legendWidth;
  const bottom = height - 50;
  const px = (v: number) => num(left + ((v - x.lo) / (x.hi - x.lo)) * (right - left));
  const py = (v: number) => num(bottom - ((v - y.lo) / (y.hi - y.lo)) * (bottom - top));

  const out = [
    `<text x="${num((left + right) / 2)}" y="24" text-anchor="middle" font-size="${FONT + 3}" font-weight="bold">${xml(options.title)}</text>`,
    `<clipPath id="${id}"><rect x="${left}" y="${top}" width="${num(right - left)}" height="${num(bottom - top)}"/></clipPath>`,
  ];
  for (const t of x.ticks) {
    const at = px(t);
    out.push(`<line x1="${at}" y1="${top}" x2="${at}" y2="${num(bottom)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${at}" y="${num(bottom + 18)}" text-anchor="middle">${t.toFixed(x.decimals)}</text>`);
  }
  y.ticks.forEach((t, i) => {
    const at = py(t);
    out.push(`<line x1="${left}" y1="${at}" x2="${num(right)}" y2="${at}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${num(Number(at) + 4)}" text-anchor="end">${yLabels[i]}</text>`);
  });
  out.push(
    `<path d="M${left} ${top} V${num(bottom)} H${num(right)}" fill="none" stroke="#333"/>`,
    `<text x="${num((left + right) / 2)}" y="${num(height - 12)}" text-anchor="middle">${xml(options.xLabel)}</text>`,
    `<text transform="translate(16 ${num((top + bottom) / 2)}) rotate(-90)" text-anchor="middle">${xml(options.yLabel)}</text>`,
  );

  series.forEach((s, i) => {
    const stroke = strokeAttrs(s, colors[i] as string);
    for (const run of segments(s.points)) {
      // A lone point becomes a zero-length stroke, which round caps draw as a dot.
      const d = run.map((p, j) => `${j ? 'L' : 'M'}${px(p.x)} ${py(p.y)}`).join(' ') + (run.length === 1 ? ' h0' : '');
      out.push(
        `<path d="${d}" fill="none" ${stroke} stroke-linecap="round" stroke-linejoin="round" clip-path="url(#${id})"/>`,
      );
    }
  });

  listed.forEach(({ s, color }, row) => {
    const at = top + 8 + row * 18;
    const from = right + 12;
    out.push(`<line x1="${num(from)}" y1="${at}" x2="${num(from + 20)}" y2="${at}" ${strokeAttrs(s, color)}/>`);
    out.push(`<text x="${num(from + 26)}" y="${at + 4}">${xml(clip(s.label))}</text>`);
  });
  return out;
}

const svgDocument = (width: number, height: number, title: string, body: string[]) =>
  [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" font-family="sans-serif" font-size="${FONT}">`,
    `<title>${xml(title)}</title>`,
    `<rect width="${num(width)}" height="${num(height)}" fill="white"/>`,
    ...body,
    '</svg>',
  ].join('\n');

/** A complete standalone SVG document. */
export function lineChart(series: readonly Series[], options: ChartOptions): string {
  return svgDocument(options.width ?? 800, options.height ?? 450, options.title, chartBody(series, options, 'plot'));
}

/** Panels left to right, then top to bottom, each in a cell as large as the largest panel. */
export function chartGrid(panels: readonly Panel[], columns: number): string {
  if (!Number.isInteger(columns) || columns < 1) {
    throw new RangeError(`columns must be a positive integer, got ${columns}`);
  }
  const cellWidth = Math.max(0, ...panels.map((p) => p.options.width ?? 800));
  const cellHeight = Math.max(0, ...panels.map((p) => p.options.height ?? 450));
  const body = panels.map((p, i) => {
    const at = `translate(${num((i % columns) * cellWidth)} ${num(Math.floor(i / columns) * cellHeight)})`;
    return `<g transform="${at}">\n${chartBody(p.series, p.options, `plot${i}`).join('\n')}\n</g>`;
  });
  const width = Math.min(columns, panels.length) * cellWidth;
  const title = panels.map((p) => p.options.title).join('; ');
  return svgDocument(width, Math.ceil(panels.length / columns) * cellHeight, title, body);
}
