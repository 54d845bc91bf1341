'use strict';
// A real SOFA Bolt server (sofa-rpc-node) for the sidecar's end-to-end tests.
//
// Usage: node server.js [--port N] [--hessian draft|4.0] [--max-idle-ms N] [--report-headers on]
//   --port         listen port on 127.0.0.1 (default $PORT or 12199; 0 picks a free one)
//   --hessian      Hessian dialect: 'draft' (sofa-rpc-node's default, Hessian 2.0 draft) or '4.0'
//   --max-idle-ms  close a connection after this long without reads (sofa-rpc-node default 90000)
//   --report-headers on  print every request's Bolt header map as it arrived on the wire
//
// Service com.alipay.test.TestService, versions 1.0 and 2.0 alike, with echo(x), throwError(),
// slow(ms).
// stdout: first the line `listening <port>`, then one JSON object per line:
//   {"event":"connection","remote":"127.0.0.1:p"}
//   {"event":"heartbeat","remote":"...","id":N,"count":K}   (a bolt heartbeat request arrived)
//   {"event":"close","remote":"...","requests":R,"heartbeats":K}
//   {"event":"request_headers","remote":"...","id":N,"headers":{...}}   (with --report-headers on)
// Set PEER_DEBUG=1 to get the library's own logs on stderr.

const net = require('net');
const { parseArgs, makeLogger } = require('./args');

const opts = parseArgs(process.argv.slice(2), {
  port: process.env.PORT || '12199',
  hessian: 'draft',
  'max-idle-ms': '90000',
  'report-headers': 'off',
});
const { HeaderTap } = require('./header_tap');

// The dialect is a process-wide switch inside sofa-bolt-node; set it before anything encodes.
if (opts.hessian === '4.0') {
  require('sofa-bolt-node').setOptions({ hessianVersion: '4.0' });
} else if (opts.hessian !== 'draft') {
  console.error(`unknown --hessian ${opts.hessian} (use draft or 4.0)`);
  process.exit(2);
}

const { RpcServer } = require('sofa-rpc-node').server;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** RpcServer bound to 127.0.0.1 only, Nagle off, announcing its port and connections. */
class LoopbackRpcServer extends RpcServer {
  _startServer(port) {
    const server = net.createServer();
    server.once('error', err => { this.emit('error', err); });
    server.on('connection', socket => {
      socket.setNoDelay(true);
      this._handleSocket(socket);
    });
    server.listen(port, '127.0.0.1', () => {
      this.publishPort = server.address().port;
    });
    return server;
  }
}

const server = new LoopbackRpcServer({
  appName: 'sidecar-e2e-server',
  logger: makeLogger(),
  port: Number(opts.port),
  maxIdleTime: Number(opts['max-idle-ms']),
});

// Errors thrown by service methods are reported to the caller; nothing to do here.
server.on('error', () => {});

server.on('connection', conn => {
  const remote = conn.remoteAddress;
  let heartbeats = 0;
  let requests = 0;
  emit({ event: 'connection', remote });
  if (opts['report-headers'] === 'on') {
    new HeaderTap(conn.socket, (headers, id) => emit({ event: 'request_headers', remote, id, headers }));
  }
  conn._decoder.on('heartbeat', hb => {
    heartbeats += 1;
    emit({ event: 'heartbeat', remote, id: hb.packetId, count: heartbeats });
  });
  conn.on('request', () => { requests += 1; });
  conn.once('close', () => emit({ event: 'close', remote, requests, heartbeats }));
});

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

const testService = {
  async echo(x) {
    return x;
  },
  async throwError() {
    throw new Error('thrown by TestService.throwError');
  },
  async slow(ms) {
    await sleep(Number(ms));
    return ms;
  },
};
for (const version of [ '1.0', '2.0' ]) {
  server.addService({ interfaceName: 'com.alipay.test.TestService', version }, testService);
}

server.start().then(() => {
  process.stdout.write(`listening ${server.publishPort}\n`);
}, err => {
  console.error(`server failed to start: ${err.message}`);
  process.exit(1);
});

for (const sig of [ 'SIGTERM', 'SIGINT' ]) {
  process.once(sig, () => process.exit(0));
}
