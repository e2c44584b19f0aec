// A node's own page: its round records from /events (the history first, then one per round) and
// its peers and verdicts from /status. Peer ids, addresses and reasons come from the network: they
// are only ever written as text.
import {
  bytes,
  connectEvents,
  duration,
  el,
  fillRows,
  fixed,
  lineChart,
  mean,
  shortId,
  text,
  throttle,
} from './common.js';

/** Rounds kept for the charts, as many as the node keeps. */
const KEEP = 2000;
const STATUS_MS = 2000;
const MAX_ROWS = 200;

const rounds = [];
let statusRound = null;

const charts = {
  reward: lineChart(document.getElementById('chart-reward'), {
    title: 'Reward of own completions',
    yLabel: 'mean reward',
    yRange: [0, 1],
    series: [
      { label: 'this round', color: '#9ab3cf', width: 1 },
      { label: 'mean of last 10', color: '#4e79a7', width: 2.5 },
    ],
  }),
  heldOut: lineChart(document.getElementById('chart-held-out'), {
    title: 'Held-out pass rate (the same tasks each time)',
    yLabel: 'pass rate',
    yRange: [0, 1],
    series: [{ label: 'held-out', color: '#59a14f', width: 2, points: true }],
  }),
  clip: lineChart(document.getElementById('chart-clip'), {
    title: 'SAPO: clip fraction (0 with one pass per batch, μ = 1)',
    yLabel: 'share of tokens',
    yRange: [0, 0.01],
    series: [{ label: 'clip fraction', color: '#e15759' }],
  }),
  kl: lineChart(document.getElementById('chart-kl'), {
    title: 'SAPO: approximate KL(π_old ‖ π) (0 with μ = 1)',
    yLabel: 'nats',
    yRange: [0, 0.001],
    series: [{ label: 'approx KL', color: '#b07aa1' }],
  }),
  entropy: lineChart(document.getElementById('chart-entropy'), {
    title: 'SAPO: policy entropy per completion token',
    yLabel: 'nats',
    series: [{ label: 'entropy', color: '#f28e2b' }],
  }),
  length: lineChart(document.getElementById('chart-length'), {
    title: 'SAPO: mean completion length',
    yLabel: 'tokens',
    series: [{ label: 'tokens per completion', color: '#76b7b2' }],
  }),
  groups: lineChart(document.getElementById('chart-groups'), {
    title: 'Groups the SAPO step learned from',
    yLabel: 'groups',
    series: [
      { label: 'own', color: '#4e79a7' },
      { label: "peers'", color: '#f28e2b' },
      { label: 'zero signal (dropped)', color: '#bab0ac', dash: [4, 4] },
    ],
  }),
  rejects: lineChart(document.getElementById('chart-rejects'), {
    title: "Peers' messages rejected per round",
    yLabel: 'messages',
    yRange: [0, 1],
    series: [
      { label: 'rollouts', color: '#e15759' },
      { label: 'tasks', color: '#9c755f' },
    ],
  }),
};

const count = (counts, prefix) =>
  Object.entries(counts ?? {})
    .filter(([key]) => key.startsWith(prefix))
    .reduce((sum, [, n]) => sum + (typeof n === 'number' ? n : 0), 0);
const num = (value) => (typeof value === 'number' && Number.isFinite(value) ? value : null);

/** What the charts need of one round record. */
function compact(record) {
  const stats = record.learner?.stats ?? null;
  return {
    round: num(record.round),
    reward: num(record.reward),
    heldOut: num(record.heldOut?.passRate),
    clip: num(stats?.clipFraction),
    kl: num(stats?.approxKl),
    entropy: num(stats?.entropy),
    tokens: num(stats?.meanCompletionTokens),
    localUsed: num(record.groups?.localUsed),
    externalUsed: num(record.groups?.externalUsed),
    zeroSignal: num((record.groups?.zeroSignal?.local ?? 0) + (record.groups?.zeroSignal?.external ?? 0)),
    rejectedRollouts: count(record.received?.rollouts, 'reject'),
    rejectedTasks: count(record.received?.tasks, 'reject'),
  };
}

function draw() {
  const x = rounds.map((r) => r.round);
  const last10 = rounds.map((_, i) =>
    mean(
      rounds
        .slice(Math.max(0, i - 9), i + 1)
        .map((r) => r.reward)
        .filter((v) => v !== null),
    ),
  );
  const pick = (key) => rounds.map((r) => r[key]);
  charts.reward.setData(x, [pick('reward'), last10]);
  charts.heldOut.setData(x, [pick('heldOut')]);
  charts.clip.setData(x, [pick('clip')]);
  charts.kl.setData(x, [pick('kl')]);
  charts.entropy.setData(x, [pick('entropy')]);
  charts.length.setData(x, [pick('tokens')]);
  charts.groups.setData(x, [pick('localUsed'), pick('externalUsed'), pick('zeroSignal')]);
  charts.rejects.setData(x, [pick('rejectedRollouts'), pick('rejectedTasks')]);
  showRound();
  const heldOut = rounds.filter((r) => r.heldOut !== null).at(-1);
  if (heldOut !== undefined) text('held-out', `${fixed(heldOut.heldOut)} (round ${heldOut.round})`);
}
const redraw = throttle(draw, 250);

function showRound() {
  const last = rounds.at(-1)?.round ?? null;
  const round = last === null ? statusRound : statusRound === null ? last : Math.max(last, statusRound);
  text('round', round === null ? '-' : String(round));
}

connectEvents(
  {
    hello() {
      rounds.length = 0;
      redraw();
    },
    round(record) {
      const entry = compact(record);
      if (entry.round === null) return;
      rounds.push(entry);
      if (rounds.length > KEEP) rounds.splice(0, rounds.length - KEEP);
      redraw();
    },
  },
  (state) => {
    const badge = document.getElementById('connection');
    badge.textContent = state === 'live' ? 'live' : state === 'closed' ? 'disconnected' : 'reconnecting…';
    badge.className = `badge ${state}`;
  },
);

function showStatus(status) {
  text('peer-id', String(status.peerId ?? '?'));
  document.title = `swarm-node ${shortId(status.peerId)}`;
  const training = status.mode !== 'bootstrap';
  document.getElementById('charts').hidden = !training;
  document.getElementById('relay-note').hidden = training;
  const model = status.model === null || status.model === undefined ? '' : `, model ${status.model.source}`;
  text(
    'summary',
    `${training ? 'A training node' : 'A bootstrap peer'} in swarm "${status.swarmId}"${model}, listening on ${(status.addresses ?? []).join(', ') || '-'}.`,
  );
  statusRound = num(status.round);
  showRound();
  text('policy-version', status.policyVersion === null ? '-' : String(status.policyVersion));
  text('reward-last10', fixed(status.reward?.last10));
  text('reward-run', fixed(status.reward?.run));
  if (rounds.every((r) => r.heldOut === null)) {
    const heldOut = status.learner?.heldOut;
    text('held-out', heldOut ? fixed(heldOut.passRate) : 'not measured yet');
  }
  const connections = Array.isArray(status.peers) ? status.peers : [];
  const byPeer = new Map();
  for (const c of connections) {
    const id = String(c.id);
    const known = byPeer.get(id) ?? { id, addresses: [], score: num(c.score) };
    known.addresses.push(String(c.address));
    byPeer.set(id, known);
  }
  text('peers-count', String(byPeer.size));
  showNetwork(status.network, training);
  text('mesh', `${status.mesh?.tasks ?? '-'} / ${status.mesh?.rollouts ?? '-'}`);
  text('groups', `${status.rollouts?.sent ?? '-'} / ${status.externalGroupsUsed ?? '-'}`);
  const received = status.rollouts?.received ?? {};
  text('rejects', String(Object.values(received).reduce((sum, counts) => sum + count(counts, 'reject'), 0)));
  const backend = status.backend;
  text('backend', backend ? `${backend.name}${backend.gpu ? ' (GPU)' : ''}` : '-');
  text('memory', bytes(status.memory?.rss));
  const started = Date.parse(status.startedAt);
  text('uptime', Number.isFinite(started) ? duration((Date.now() - started) / 1000) : '-');

  const accepted = status.rollouts?.acceptedByProducer ?? {};
  const peers = [...byPeer.values()].sort((a, b) => (b.score ?? 0) - (a.score ?? 0));
  fillRows(
    document.getElementById('peers'),
    peers
      .slice(0, MAX_ROWS)
      .map((p) =>
        el(
          'tr',
          {},
          el('td', {}, el('code', { title: p.id }, p.id)),
          el('td', {}, el('code', {}, p.addresses.join(' '))),
          el('td', { className: 'num' }, fixed(p.score)),
          el('td', { className: 'num' }, String(Object.hasOwn(accepted, p.id) ? accepted[p.id] : 0)),
        ),
      ),
    4,
    'no peers connected',
  );
  text('peers-shown', peers.length > MAX_ROWS ? `(the first ${MAX_ROWS} of ${peers.length})` : '');

  const verdicts = [];
  for (const [topic, counts] of Object.entries(received)) {
    for (const [key, n] of Object.entries(counts ?? {})) {
      const [verdict, ...reason] = key.split(':');
      verdicts.push({ topic, verdict, reason: reason.join(':'), n: num(n) ?? 0 });
    }
  }
  const rank = (v) => (v.verdict === 'reject' ? 0 : v.verdict === 'ignore' ? 1 : 2);
  verdicts.sort((a, b) => rank(a) - rank(b) || b.n - a.n);
  fillRows(
    document.getElementById('verdicts'),
    verdicts
      .slice(0, MAX_ROWS)
      .map((v) =>
        el(
          'tr',
          { className: v.verdict },
          el('td', {}, v.topic),
          el('td', {}, v.verdict),
          el('td', {}, el('code', {}, v.reason || '-')),
          el('td', { className: 'num' }, String(v.n)),
        ),
      ),
    4,
    'no messages from peers yet',
  );
}

/** Reachability, relays and the bootstrap peers' diagnoses (network-status.ts). */
function showNetwork(network, training) {
  text('peers-direct', network ? `${network.peers?.direct ?? '-'} / ${network.peers?.relayed ?? '-'}` : '-');
  text('reachability', network?.reachability === 'public' ? 'yes, confirmed' : 'not confirmed (NAT?)');
  const relay = network?.relayReservations;
  const held = Array.isArray(relay?.held) ? relay.held : [];
  text(
    'relay',
    training
      ? held.length === 0
        ? 'none held'
        : `held on ${held.map((id) => shortId(String(id))).join(', ')}`
      : `${relay?.granted ?? '-'} granted to nodes behind NAT`,
  );
  const seeds = Array.isArray(network?.seeds) ? network.seeds : [];
  fillRows(
    document.getElementById('seeds'),
    seeds.slice(0, MAX_ROWS).map((seed) => {
      const problem = seed.diagnosis ? `${seed.diagnosis.problem}: ${seed.diagnosis.message}` : null;
      const next = Date.parse(seed.nextTry);
      return el(
        'tr',
        { className: problem === null ? '' : 'reject' },
        el('td', {}, el('code', {}, String(seed.address))),
        el('td', {}, problem ?? (seed.connected ? 'connected' : 'not connected yet')),
        el('td', {}, Number.isFinite(next) ? `in ${duration(Math.max(0, (next - Date.now()) / 1000))}` : '-'),
      );
    }),
    3,
    'no bootstrap peers given',
  );
}

async function pollStatus() {
  try {
    const response = await fetch('/status', { cache: 'no-store' });
    if (response.ok) showStatus(await response.json());
  } catch {
    // The node is stopping or gone: the connection badge says so.
  }
  setTimeout(pollStatus, STATUS_MS);
}
pollStatus();
