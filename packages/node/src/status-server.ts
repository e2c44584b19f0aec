/**
 * The operator's HTTP surface: GET /status (JSON) and GET /metrics (Prometheus text: libp2p,
 * gossipsub and the node's own counters). Bound to 127.0.0.1 unless told otherwise; its address is
 * written to a file in the data dir so `swarm-node status` finds a node started with port 0.
 */

import { rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { NodeError } from './errors.js';

export interface StatusServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  status: () => unknown;
  registry: Registry;
  /** Where to write `http://host:port`, removed on close. */
  addressFile?: string;
}

export interface StatusServer {
  url: string;
  close(): Promise<void>;
}

export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    // No keep-alive: a client reusing a socket the server is just closing gets ECONNRESET.
    response.setHeader('connection', 'close');
    const path = URL.parse(request.url ?? '/', 'http://localhost')?.pathname;
    if (path === undefined) {
      response.writeHead(400).end();
      return;
    }
    if (request.method !== 'GET') {
      response.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/status') {
      response
        .writeHead(200, { 'content-type': 'application/json' })
        .end(`${JSON.stringify(options.status(), null, 2)}\n`);
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
      return;
    }
    response.writeHead(404, { 'content-type': 'text/plain' }).end('swarm-node serves /status and /metrics\n');
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
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new NodeError(
              'PORT_IN_USE',
              `the status port ${options.host}:${options.port} is in use; choose another with --status-port (0 picks a free one)`,
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
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (options.addressFile !== undefined) await rm(options.addressFile, { force: true });
    },
  };
}
