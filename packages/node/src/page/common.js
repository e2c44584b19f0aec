// What the node's page and the swarm's page share: building elements (text only: whatever peers
// sent is written with textContent, never as markup), number formats, the /events connection and
// charts drawn with uPlot, which the node serves from its own node_modules.
import uPlot from '/vendor/uPlot.esm.js';

/** An element with properties (className, href, title, dataset…) and children (strings become text nodes). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(
      typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child,
    );
  }
  return node;
}

/** Replaces a table body's rows, or shows `empty` in one row when there are none. */
export function fillRows(tbody, rows, columns, empty) {
  if (rows.length === 0) {
    tbody.replaceChildren(el('tr', {}, el('td', { colSpan: columns, className: 'empty' }, empty)));
  } else {
    tbody.replaceChildren(...rows);
  }
}

export function text(id, value) {
  const node = document.getElementById(id);
  if (node !== null) node.textContent = value;
}

export const fixed = (value, digits = 2) =>
  typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '-';
export const integer = (value) =>
  typeof value === 'number' && Number.isFinite(value) ? String(Math.round(value)) : '-';
export const shortId = (id) =>
  typeof id === 'string' && id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : String(id ?? '-');
export const mean = (values) => (values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length);

export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '-';
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function duration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '-';
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A link to another node's page on this machine, or null for anything but http on loopback. */
export function localPageUrl(statusUrl) {
  try {
    const url = new URL(statusUrl);
    if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return null;
    return `${url.origin}/`;
  } catch {
    return null;
  }
}

/** Ten colours that stay apart on white (Tableau 10). */
export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];

/**
 * /events with a status line: `handlers` by event name get the parsed data. The server sends
 * `hello` first on every connection, then the history: a handler for `hello` clears what the
 * page holds. EventSource reconnects by itself.
 */
export function connectEvents(handlers, onState) {
  const source = new EventSource('/events');
  source.addEventListener('open', () => onState('live'));
  source.addEventListener('error', () => onState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'));
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      handler(data);
    });
  }
  return source;
}

/** Runs `fn` at most every `ms` milliseconds, the last call winning: many events, one redraw. */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(
      () => {
        timer = null;
        last = Date.now();
        fn();
      },
      Math.max(0, ms - (Date.now() - last)),
    );
  };
}

/** A number for an axis or the legend: three significant digits, tiny ones as 2.5e-4. */
export function tick(v) {
  if (v === 0) return '0';
  if (Math.abs(v) < 1e-3) return v.toExponential(1);
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  return String(Number(v.toPrecision(3)));
}

/**
 * A line chart in `container`: x is the round; `series` are { label, color, width?, points?,
 * dash? }. Returns { setData(x, ys), setSeries(series) }; it follows the container's width.
 */
export function lineChart(container, { title, yLabel, series, yRange = null, height = 220 }) {
  let chart = null;
  let current = series;
  let data = [[], ...series.map(() => [])];
  const build = () => {
    chart?.destroy();
    const width = Math.max(240, container.clientWidth);
    chart = new uPlot(
      {
        title,
        width,
        height,
        scales: {
          x: { time: false },
          y:
            yRange === null
              ? { auto: true }
              : { range: (_u, min, max) => [Math.min(yRange[0], min), Math.max(yRange[1], max)] },
        },
        axes: [
          { label: 'round', size: 40, labelSize: 16 },
          { label: yLabel, size: 60, labelSize: 16, values: (_u, splits) => splits.map(tick) },
        ],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        series: [
          { label: 'round', value: (_u, v) => (v === null || v === undefined ? '-' : String(v)) },
          ...current.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: s.width ?? 1.5,
            spanGaps: true,
            ...(s.dash === undefined ? {} : { dash: s.dash }),
            points: { show: s.points ?? false, size: 5 },
            value: (_u, v) => (v === null || v === undefined ? '-' : tick(v)),
          })),
        ],
      },
      data,
      container,
    );
  };
  build();
  new ResizeObserver(() => {
    const width = Math.max(240, container.clientWidth);
    if (chart !== null && Math.abs(chart.width - width) > 1) chart.setSize({ width, height });
  }).observe(container);
  return {
    setData(x, ys) {
      data = [x, ...ys];
      chart.setData(data);
    },
    /** New series (labels or count changed): the chart is built again. */
    setSeries(next) {
      current = next;
      data = [data[0], ...next.map((_, i) => data[i + 1] ?? data[0].map(() => null))];
      build();
    },
    get series() {
      return current;
    },
  };
}
