// The launcher's page of the whole swarm: every node's round, reward and curves side by side.
// `swarm` events carry the launcher's table of nodes (about once a second), `round` events one
// node's round (the history of every node first). Each node's name links to its own page.
import {
  connectEvents,
  duration,
  el,
  fillRows,
  fixed,
  lineChart,
  localPageUrl,
  mean,
  PALETTE,
  shortId,
  text,
  throttle,
} from './common.js';

/** Rounds kept per node, as many as the launcher sends. */
const KEEP = 2000;

/** node name → that node's rounds, compact records in order of arrival. */
const rounds = new Map();
let names = [];

const perNode = (color) => names.map((name, i) => ({ label: name, color: color(i), width: 1.5 }));
const colour = (i) => PALETTE[i % PALETTE.length];
const chartSpecs = {
  reward: {
    id: 'chart-reward',
    title: 'Reward of own completions, mean of the last 10 rounds: each node and the swarm',
    yLabel: 'mean reward',
    yRange: [0, 1],
    key: 'reward',
    smooth: 10,
    mean: true,
  },
  heldOut: {
    id: 'chart-held-out',
    title: 'Held-out pass rate (the same tasks each time)',
    yLabel: 'pass rate',
    yRange: [0, 1],
    key: 'heldOut',
    points: true,
  },
  entropy: { id: 'chart-entropy', title: 'SAPO: policy entropy per token', yLabel: 'nats', key: 'entropy' },
  length: { id: 'chart-length', title: 'SAPO: mean completion length', yLabel: 'tokens', key: 'tokens' },
  clip: {
    id: 'chart-clip',
    title: 'SAPO: clip fraction (0 with one pass per batch, μ = 1)',
    yLabel: 'share of tokens',
    yRange: [0, 0.01],
    key: 'clip',
  },
  kl: {
    id: 'chart-kl',
    title: 'SAPO: approximate KL(π_old ‖ π) (0 with μ = 1)',
    yLabel: 'nats',
    yRange: [0, 0.001],
    key: 'kl',
  },
};
const seriesOf = (spec) => [
  ...perNode(colour).map((s) => ({ ...s, points: spec.points ?? false })),
  ...(spec.mean ? [{ label: 'swarm mean', color: '#222222', width: 3 }] : []),
];
const charts = Object.fromEntries(
  Object.entries(chartSpecs).map(([key, spec]) => [
    key,
    lineChart(document.getElementById(spec.id), {
      title: spec.title,
      yLabel: spec.yLabel,
      yRange: spec.yRange ?? null,
      series: seriesOf(spec),
    }),
  ]),
);

function draw() {
  // One x for every chart: each round any node has finished, from the lowest to the highest.
  let low = Number.POSITIVE_INFINITY;
  let high = Number.NEGATIVE_INFINITY;
  for (const name of names) {
    for (const r of rounds.get(name) ?? []) {
      low = Math.min(low, r.round);
      high = Math.max(high, r.round);
    }
  }
  const x = Number.isFinite(low) ? Array.from({ length: high - low + 1 }, (_, i) => low + i) : [];
  const column = (name, key) => {
    const values = x.map(() => null);
    for (const r of rounds.get(name) ?? []) values[r.round - low] = r[key];
    return values;
  };
  for (const [key, spec] of Object.entries(chartSpecs)) {
    const ys = names.map((name) => {
      const values = column(name, spec.key);
      return spec.smooth === undefined ? values : movingMean(values, spec.smooth);
    });
    if (spec.mean) ys.push(x.map((_, i) => mean(ys.map((y) => y[i]).filter((v) => v !== null))));
    charts[key].setData(x, ys);
  }
}
const redraw = throttle(draw, 250);

/** values[i] → the mean of the values present among the last `n` up to i (null where none is). */
function movingMean(values, n) {
  return values.map((v, i) => {
    if (v === null) return null;
    return mean(values.slice(Math.max(0, i - n + 1), i + 1).filter((w) => w !== null));
  });
}

function setNames(next) {
  if (next.length === names.length && next.every((name, i) => name === names[i])) return;
  names = next;
  for (const [key, spec] of Object.entries(chartSpecs)) charts[key].setSeries(seriesOf(spec));
  redraw();
}

function nodeLink(name, page) {
  const url = localPageUrl(page);
  return url === null ? el('span', {}, name) : el('a', { href: url, title: `${name}'s own page: ${url}` }, name);
}

function showSwarm(view) {
  text('swarm-id', String(view.swarm ?? '?'));
  document.title = `swarm ${view.swarm ?? ''}`;
  const nodes = Array.isArray(view.nodes) ? view.nodes : [];
  setNames(nodes.map((n) => String(n.name)));
  const wanted = view.roundsWanted === 0 ? 'until Ctrl-C' : `${view.roundsWanted} rounds each`;
  const state = view.finished
    ? 'finished'
    : view.stopping
      ? `stopping (${view.stopping}): each node finishes its step and saves`
      : `swarm mean reward ${fixed(view.meanReward)} in the latest round all have done`;
  text(
    'summary',
    `${nodes.length} node${nodes.length === 1 ? '' : 's'} on this machine, ${wanted}, up ${duration(view.seconds)}; ${state}. Files in ${view.out}.`,
  );
  fillRows(
    document.getElementById('nodes'),
    nodes.map((n, i) => {
      const swatch = el('span', { className: 'swatch' });
      swatch.style.background = colour(i);
      const roundText =
        n.round === null || n.round === undefined
          ? '-'
          : view.roundsWanted === 0
            ? String(n.round)
            : `${n.round} (${n.rounds}/${view.roundsWanted})`;
      return el(
        'tr',
        { dataset: { node: String(n.name) } },
        el('td', {}, swatch, nodeLink(String(n.name), n.page)),
        el('td', {}, el('code', { title: String(n.peerId ?? '') }, shortId(n.peerId))),
        el('td', { className: 'num round', dataset: { round: String(n.round ?? '') } }, roundText),
        el('td', { className: 'num' }, fixed(n.reward)),
        el('td', { className: 'num' }, fixed(n.last10)),
        el('td', { className: 'num' }, fixed(n.heldOut)),
        el('td', { className: 'num' }, n.peers === null || n.peers === undefined ? '-' : String(n.peers)),
        el('td', { className: 'num' }, String(n.rolloutsIn ?? '-')),
        el('td', { className: 'num' }, String(n.rolloutsOut ?? '-')),
        el('td', { className: `num${n.rejects > 0 ? ' bad' : ''}` }, String(n.rejects ?? '-')),
        el('td', { className: 'state' }, String(n.state ?? '-')),
      );
    }),
    11,
    'no nodes yet',
  );
  const seed = view.bootstrap;
  const seedCell = document.getElementById('seed');
  if (seed) {
    const url = localPageUrl(seed.page);
    seedCell.replaceChildren(
      url === null ? 'bootstrap peer' : el('a', { href: url }, 'bootstrap peer'),
      ` ${seed.address ?? '(starting)'}, peers ${seed.peers ?? '-'}, ${seed.state ?? '-'}`,
    );
  } else {
    seedCell.replaceChildren();
  }
}

connectEvents(
  {
    hello() {
      rounds.clear();
      redraw();
    },
    swarm: showSwarm,
    round(record) {
      if (typeof record?.node !== 'string' || typeof record.round !== 'number') return;
      let list = rounds.get(record.node);
      if (list === undefined) {
        list = [];
        rounds.set(record.node, list);
      }
      list.push(record);
      if (list.length > KEEP) list.splice(0, list.length - KEEP);
      redraw();
    },
  },
  (state) => {
    const badge = document.getElementById('connection');
    badge.textContent =
      state === 'live' ? 'live' : state === 'closed' ? 'disconnected' : 'launcher gone or reconnecting…';
    badge.className = `badge ${state}`;
  },
);
