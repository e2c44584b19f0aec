/**
 * The operator's HTTP surface: GET / (a live page in the browser), /events (server-sent events:
 * one per round), /status (JSON) and /metrics (Prometheus text: libp2p, gossipsub and the node's
 * own counters). Bound to 127.0.0.1 unless told otherwise; its address is written to a file in the
 * data dir so `swarm-node status` finds a node started with port 0. `swarm-node swarm` serves its
 * page for the whole swarm with the same server (page 'swarm', no /metrics).
 *
 * The page's HTML, JavaScript and CSS are the files in src/page/, shipped with the package and read
 * from there at run time (from src/ and from dist/ alike); its charts are uPlot's, served from the
 * uplot package in node_modules. The page asks for nothing from anywhere else, and its
 * Content-Security-Policy says so. Whatever peers sent (peer ids, reasons) reaches it as JSON and is
 * written into the page as text, never as markup.
 */

import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { NodeError } from './errors.js';

/** One server-sent event: its name and its data, sent as one line of JSON. */
export interface ServerEvent {
  event: string;
  data: unknown;
}

/** What /events streams: a new client gets `history()` first, then every event as it comes. */
export interface EventFeed {
  history(): Iterable<ServerEvent>;
  /** Calls `listener` with every later event; returns the function that stops it. */
  subscribe(listener: (event: ServerEvent) => void): () => void;
}

/** An EventFeed that keeps the last `limit` events for clients that connect later. */
export class EventHistory implements EventFeed {
  readonly limit: number;
  readonly #events: ServerEvent[] = [];
  readonly #listeners = new Set<(event: ServerEvent) => void>();

  constructor(limit = ROUND_HISTORY) {
    this.limit = limit;
  }

  push(event: string, data: unknown): void {
    const item = { event, data };
    this.#events.push(item);
    if (this.#events.length > this.limit) this.#events.splice(0, this.#events.length - this.limit);
    for (const listener of this.#listeners) listener(item);
  }

  history(): readonly ServerEvent[] {
    return this.#events;
  }

  subscribe(listener: (event: ServerEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** Rounds a node's page gets on connecting: about the last 2 000 (a few MB of JSON at most). */
export const ROUND_HISTORY = 2000;

/** A node's round records as an EventFeed ('round' events), from the moment it is called. */
export function roundHistory<T>(
  source: { on(event: 'round', listener: (record: T) => void): unknown },
  limit = ROUND_HISTORY,
): EventHistory {
  const history = new EventHistory(limit);
  source.on('round', (record) => history.push('round', record));
  return history;
}

export interface StatusServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  status: () => unknown;
  /** Served as /metrics; without it there is no /metrics. */
  registry?: Registry;
  /** What /events streams; without it, only the `hello` event. */
  events?: EventFeed;
  /** Which page / serves: a node's (default) or the launcher's page of the whole swarm. */
  page?: 'node' | 'swarm';
  /** The command-line flag that sets the port, for the message when it is in use. Default --status-port. */
  portFlag?: string;
  /** Where to write `http://host:port`, removed on close. */
  addressFile?: string;
}

export interface StatusServer {
  url: string;
  close(): Promise<void>;
}

const PAGE_DIR = fileURLToPath(new URL('../src/page/', import.meta.url));
const require = createRequire(import.meta.url);

/** Every file the page may ask for, by path: nothing else is read from disk. */
const FILES: Record<string, { file: () => string; type: string }> = {
  '/page/common.js': { file: () => `${PAGE_DIR}common.js`, type: 'text/javascript; charset=utf-8' },
  '/page/node.js': { file: () => `${PAGE_DIR}node.js`, type: 'text/javascript; charset=utf-8' },
  '/page/swarm.js': { file: () => `${PAGE_DIR}swarm.js`, type: 'text/javascript; charset=utf-8' },
  '/page/page.css': { file: () => `${PAGE_DIR}page.css`, type: 'text/css; charset=utf-8' },
  '/page/icon.svg': { file: () => `${PAGE_DIR}icon.svg`, type: 'image/svg+xml' },
  '/vendor/uPlot.esm.js': {
    file: () => require.resolve('uplot/dist/uPlot.esm.js'),
    type: 'text/javascript; charset=utf-8',
  },
  '/vendor/uPlot.min.css': { file: () => require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};
const PAGES = {
  node: `${PAGE_DIR}node.html`,
  swarm: `${PAGE_DIR}swarm.html`,
} as const;

/** The page loads only what this server serves, runs no inline code and can be framed by nobody. */
const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Clients of /events at once; more are refused (503). */
const MAX_EVENT_CLIENTS = 32;
/** A client of /events that lets this much pile up unread is dropped. */
const MAX_EVENT_BACKLOG = 32 * 1024 * 1024;
/** A comment line this often keeps idle /events connections open through proxies and shows dead ones. */
const KEEP_ALIVE_MS = 15_000;

const fileCache = new Map<string, Promise<Buffer>>();
function cachedFile(file: string): Promise<Buffer> {
  let content = fileCache.get(file);
  if (content === undefined) {
    content = readFile(file);
    // A failed read is tried again next time.
    content.catch(() => fileCache.delete(file));
    fileCache.set(file, content);
  }
  return content;
}

export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const page = options.page ?? 'node';
  const startedAt = new Date().toISOString();
  const clients = new Set<ServerResponse>();
  const sendFile = (response: ServerResponse, file: string, type: string) => {
    cachedFile(file).then(
      (content) =>
        response
          .writeHead(200, {
            'content-type': type,
            'content-length': content.length,
            'cache-control': 'no-cache',
            'x-content-type-options': 'nosniff',
            'content-security-policy': CONTENT_SECURITY_POLICY,
          })
          .end(content),
      (error: unknown) => {
        if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' });
        response.end(`cannot read ${file}: ${(error as Error).message}\n`);
      },
    );
  };
  const streamEvents = (request: IncomingMessage, response: ServerResponse) => {
    if (clients.size >= MAX_EVENT_CLIENTS) {
      response.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '10' }).end('too many /events clients\n');
      return;
    }
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    const send = (item: ServerEvent) => {
      if (response.destroyed) return;
      // JSON.stringify escapes line breaks, so the data is one `data:` line.
      response.write(`event: ${item.event}\ndata: ${JSON.stringify(item.data)}\n\n`);
      if (response.writableLength > MAX_EVENT_BACKLOG) response.destroy();
    };
    clients.add(response);
    response.write('retry: 2000\n\n');
    // `hello` first: a client that reconnects clears what it has, since the history follows.
    send({ event: 'hello', data: { page, startedAt } });
    for (const item of options.events?.history() ?? []) send(item);
    const unsubscribe = options.events?.subscribe(send) ?? (() => {});
    const done = () => {
      unsubscribe();
      clients.delete(response);
    };
    request.on('close', done);
    response.on('close', done);
  };
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const path = URL.parse(request.url ?? '/', 'http://localhost')?.pathname;
    if (path === undefined) {
      response.setHeader('connection', 'close');
      response.writeHead(400).end();
      return;
    }
    if (path === '/events') {
      if (request.method !== 'GET') {
        response.writeHead(405, { allow: 'GET' }).end();
        return;
      }
      streamEvents(request, response);
      return;
    }
    // No keep-alive: a client reusing a socket the server is just closing gets ECONNRESET.
    response.setHeader('connection', 'close');
    if (request.method !== 'GET') {
      response.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/' || path === '/index.html') {
      sendFile(response, PAGES[page], 'text/html; charset=utf-8');
      return;
    }
    const asset = Object.hasOwn(FILES, path) ? FILES[path] : undefined;
    if (asset !== undefined) {
      sendFile(response, asset.file(), asset.type);
      return;
    }
    if (path === '/status') {
      response
        .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(`${JSON.stringify(options.status(), null, 2)}\n`);
      return;
    }
    if (path === '/metrics' && options.registry !== undefined) {
      const registry = options.registry;
      registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
      return;
    }
    response
      .writeHead(404, { 'content-type': 'text/plain' })
      .end(`swarm-node serves /, /events, /status${options.registry === undefined ? '' : ' and /metrics'}\n`);
  };
  // Whatever a request holds, it must not take the node down.
  const server = createServer((request, response) => {
    try {
      handle(request, response);
    } catch (error) {
      if (!response.headersSent) response.writeHead(500);
      response.end(String(error));
    }
  });
  const keepAlive = setInterval(() => {
    for (const client of clients) if (!client.destroyed) client.write(': keep-alive\n\n');
  }, KEEP_ALIVE_MS);
  keepAlive.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      clearInterval(keepAlive);
      reject(
        error.code === 'EADDRINUSE'
          ? new NodeError(
              'PORT_IN_USE',
              `the ${page === 'node' ? 'status' : 'page'} port ${options.host}:${options.port} is in use; choose another with ${options.portFlag ?? '--status-port'} (0 picks a free one)`,
              { cause: error },
            )
          : new NodeError('BAD_ADDRESS', `cannot serve status on ${options.host}:${options.port}: ${error.message}`, {
              cause: error,
            }),
      );
    });
    server.listen(options.port, options.host, resolve);
  });
  const { address, port, family } = server.address() as AddressInfo;
  const url = `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
  if (options.addressFile !== undefined) await writeFile(options.addressFile, `${url}\n`);
  return {
    url,
    async close() {
      clearInterval(keepAlive);
      for (const client of clients) client.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (options.addressFile !== undefined) await rm(options.addressFile, { force: true });
    },
  };
}
