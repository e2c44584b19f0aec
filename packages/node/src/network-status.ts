/**
 * What /status says of a node's network: whether it is reachable (AutoNAT v2), its relay
 * reservations, its peers reached directly or only through a relay, and its bootstrap peers.
 */
import { isPrivate } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { SeedState } from './bootstrap-check.js';
import type { Host } from './host.js';

export interface NetworkStatus {
  /**
   * 'public': libp2p holds a public address of this node as confirmed — by AutoNAT v2 dial-backs, or
   * given with --announce. 'private/unknown': none (behind NAT, or not checked yet).
   */
  reachability: 'public' | 'private/unknown';
  relayReservations: {
    /** Relays (peer ids) this node holds a reservation on: peers reach it through them. */
    held: string[];
    /** Reservations this node's relay server holds for others (a seed); null without a relay server. */
    granted: number | null;
  };
  /** Connected peers: with a direct connection, or only relayed ones. */
  peers: { direct: number; relayed: number };
  seeds: SeedState[];
}

const isCircuit = (address: Multiaddr) => address.getComponents().some((c) => c.name === 'p2p-circuit');

export function networkStatus(host: Host): NetworkStatus {
  const { libp2p } = host;
  const addresses = libp2p.getMultiaddrs();
  // A reservation shows as an address of ours: /…/p2p/<relay>/p2p-circuit/p2p/<us>.
  const held = new Set<string>();
  for (const address of addresses) {
    const components = address.getComponents();
    const circuit = components.findIndex((c) => c.name === 'p2p-circuit');
    const relay = components.slice(0, Math.max(circuit, 0)).findLast((c) => c.name === 'p2p')?.value;
    if (relay !== undefined) held.add(relay);
  }
  const peers = new Set<string>();
  const direct = new Set<string>();
  for (const connection of libp2p.getConnections()) {
    const peer = connection.remotePeer.toString();
    peers.add(peer);
    // Relayed connections carry the relay's limits (and a /p2p-circuit remote address).
    if (connection.limits === undefined && !isCircuit(connection.remoteAddr)) direct.add(peer);
  }
  return {
    reachability: addresses.some((a) => !isCircuit(a) && !isPrivate(a)) ? 'public' : 'private/unknown',
    relayReservations: { held: [...held], granted: libp2p.services.relay?.reservations.size ?? null },
    peers: { direct: direct.size, relayed: peers.size - direct.size },
    seeds: host.seeds.states(),
  };
}
