'use strict';
// A real SOFA Bolt client (sofa-rpc-node) running one scenario for the sidecar's end-to-end tests.
//
// Usage: node client.js <scenario> [arg] --server host:port [--hessian draft|4.0] [--timeout ms]
//                       [--concurrency C] [--breaker on|off] [--version V]
// Scenarios (one RpcClient, so one TCP connection to --server):
//   seq N         N sequential echo calls; each must return its argument
//   concurrent N  N echo calls in flight at once on the one connection
//   mixed N       N sequential echo calls cycling through Bolt v1, v2 (ver1 1) and v2 with CRC32
//                 (ver1 2) frames on the one connection
//   types         echo of values whose encodings differ between Hessian dialects
//   throw         throwError() must reject with an error mentioning RpcServerException
//   heartbeat N   send N bolt heartbeats on the connection right away; count the acks
//   hold S        one echo call, then keep the connection idle for up to S seconds; report
//                 whether the server closed it meanwhile (closed_by_peer)
//   load S        C workers call echo back to back until a line `stop` arrives on stdin (the
//                 caller decides when the load ends), or for S seconds at most; report
//                 successes, errors and the longest call, plus the Bolt status of every response
//                 received (statuses, error_responses); prints {"progress":...} lines every 200 ms
// stdout: one JSON result line {"scenario":...,"ok":bool,...}; exit status 0 iff ok.
// --version calls com.alipay.test.TestService:V (default 1.0; the server also has 2.0), which
// is the `service` value in each request's Bolt header map.
// --breaker off forces sofa-rpc-node's client-side circuit breaker closed (it would otherwise
// block calls for 5 s after a burst of errors, hiding what the server side does).

const assert = require('assert');
const { parseArgs, makeLogger } = require('./args');
const { StatusTap } = require('./status_tap');

const opts = parseArgs(process.argv.slice(2), {
  server: '127.0.0.1:2045',
  hessian: 'draft',
  timeout: '3000',
  concurrency: '16',
  breaker: 'on',
  version: '1.0',
});

if (opts.hessian === '4.0') {
  require('sofa-bolt-node').setOptions({ hessianVersion: '4.0' });
} else if (opts.hessian !== 'draft') {
  fail(`unknown --hessian ${opts.hessian} (use draft or 4.0)`);
}

const { RpcClient, DynamicConfig } = require('sofa-rpc-node').client;

if (opts.breaker === 'off') {
  DynamicConfig.instance.circuitBreaker.forceClosed = true;
} else if (opts.breaker !== 'on') {
  fail(`unknown --breaker ${opts.breaker} (use on or off)`);
}

const responseTimeout = Number(opts.timeout);
const [ scenario, scenarioArg ] = opts._;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(message) {
  emit({ scenario: process.argv[2] || null, ok: false, error: message });
  process.exit(1);
}

function errorText(err) {
  return `${err.name}: ${err.message}`;
}

/** Error kind for grouping: name plus message with numbers blanked (timings and ports vary). */
function errorKind(err) {
  return errorText(err).replace(/\d+/g, 'N').slice(0, 160);
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

class Peer {
  constructor() {
    this.client = new RpcClient({ logger: makeLogger() });
    this.client.on('error', () => {}); // socket errors also surface as failed calls
    this.consumer = this.client.createConsumer({
      interfaceName: 'com.alipay.test.TestService',
      version: opts.version,
      serverHost: opts.server,
      responseTimeout,
    });
  }

  async ready() {
    await this.consumer.ready();
  }

  invoke(method, args) {
    return this.consumer.invoke(method, args, { responseTimeout });
  }

  /** The client's live connections (sofa-rpc-node keeps one per server address). */
  connections() {
    return Array.from(this.client.connectionManager.connections.values());
  }
}

async function seq(peer, n) {
  let okCount = 0;
  for (let i = 0; i < n; i++) {
    const arg = `seq-${i}-${'x'.repeat(i % 64)}`;
    const got = await peer.invoke('echo', [ arg ]);
    if (got !== arg) {
      return { ok: false, calls: n, succeeded: okCount, error: `call ${i}: sent ${JSON.stringify(arg)}, got ${JSON.stringify(got)}` };
    }
    okCount += 1;
  }
  return { ok: true, calls: n, succeeded: okCount, connections: peer.connections().length };
}

async function concurrent(peer, n) {
  const completion = [];
  const calls = [];
  for (let i = 0; i < n; i++) {
    const arg = `concurrent-${i}`;
    calls.push(peer.invoke('echo', [ arg ]).then(got => {
      completion.push(i);
      return got === arg ? null : `call ${i}: sent ${JSON.stringify(arg)}, got ${JSON.stringify(got)}`;
    }, err => `call ${i}: ${errorText(err)}`));
  }
  const problems = (await Promise.all(calls)).filter(p => p !== null);
  const outOfOrder = completion.filter((id, pos) => id !== pos).length;
  return {
    ok: problems.length === 0,
    calls: n,
    succeeded: n - problems.length,
    problems: problems.slice(0, 5),
    completed_out_of_order: outOfOrder,
    connections: peer.connections().length,
  };
}

// Frame flavours sofa-bolt-node can write: [protocolType, boltVersion (ver1), crcEnable].
// (It would also append a CRC to ver1 1 frames; Bolt says ver1 1 never has one, so that is not used.)
const FLAVOURS = [
  [ 'bolt', 1, false ],
  [ 'bolt2', 1, false ],
  [ 'bolt2', 2, true ],
];

async function mixed(peer, n) {
  const conn = peer.connections()[0];
  if (!conn) return { ok: false, error: 'no connection to the server' };
  const perFlavour = {};
  const problems = [];
  for (let i = 0; i < n; i++) {
    const [ protocolType, boltVersion, crcEnable ] = FLAVOURS[i % FLAVOURS.length];
    const flavour = `${protocolType}/ver1=${boltVersion}${crcEnable ? '/crc' : ''}`;
    Object.assign(conn._encoder, { protocolType, boltVersion, crcEnable });
    const arg = `mixed-${i}-${flavour}`;
    try {
      const got = await peer.invoke('echo', [ arg ]);
      if (got === arg) {
        perFlavour[flavour] = (perFlavour[flavour] || 0) + 1;
      } else {
        problems.push(`call ${i} (${flavour}): got ${JSON.stringify(got)}`);
      }
    } catch (err) {
      problems.push(`call ${i} (${flavour}): ${errorText(err)}`);
    }
  }
  return { ok: problems.length === 0, calls: n, succeeded: perFlavour, problems: problems.slice(0, 5), connections: peer.connections().length };
}

// Values whose Hessian encodings differ between the 2.0 draft and the final spec
// (long, double, date, typed list, map, nested object), plus plain strings.
const TYPED_VALUES = [
  'plain string',
  'unicode \u00e9\u4e2d\u6587 \ud83d\ude00',
  { $class: 'long', $: 1099511627776 },
  { $class: 'int', $: -123456 },
  { $class: 'double', $: 3.25 },
  { $class: 'boolean', $: true },
  { $class: 'java.util.Date', $: new Date(1700000000000) },
  { $class: 'java.util.List', $: [ { $class: 'java.lang.String', $: 'a' }, { $class: 'java.lang.String', $: 'b' } ] },
  { $class: 'java.util.Map', $: { k1: 'v1', k2: 'v2' } },
  {
    $class: 'com.alipay.test.Point',
    $: {
      x: { $class: 'int', $: 3 },
      y: { $class: 'long', $: 1099511627777 },
      label: { $class: 'java.lang.String', $: 'p' },
    },
  },
];

/** Plain JS form of a typed value, as the peer decodes it back. */
function plain(v) {
  if (v && typeof v === 'object' && '$class' in v) return plain(v.$);
  if (v instanceof Date) return v.getTime();
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v)) out[k] = plain(v[k]);
    return out;
  }
  return v;
}

async function types(peer) {
  const problems = [];
  for (const value of TYPED_VALUES) {
    const label = value && value.$class ? value.$class : typeof value;
    try {
      const got = await peer.invoke('echo', [ value ]);
      assert.deepStrictEqual(plain(got), plain(value));
    } catch (err) {
      problems.push(`${label}: ${errorText(err)}`);
    }
  }
  return { ok: problems.length === 0, calls: TYPED_VALUES.length, problems };
}

async function throwScenario(peer) {
  try {
    const got = await peer.invoke('throwError', []);
    return { ok: false, error: `throwError() returned ${JSON.stringify(got)} instead of rejecting` };
  } catch (err) {
    const message = errorText(err);
    return { ok: message.includes('RpcServerException'), message };
  }
}

async function heartbeat(peer, n) {
  const conn = peer.connections()[0];
  if (!conn) return { ok: false, error: 'no connection to the server' };
  const sent = [];
  const acked = [];
  const writeHeartbeat = conn._encoder.writeHeartbeat.bind(conn._encoder);
  conn._encoder.writeHeartbeat = (id, hb, cb) => {
    sent.push(id);
    return writeHeartbeat(id, hb, cb);
  };
  conn._decoder.on('heartbeat_ack', ack => { acked.push(ack.packetId); });
  for (let i = 0; i < n; i++) {
    // The library's own heartbeat(): it only fires after maxIdleTime (30 s) without traffic,
    // so mark the connection as idle for that long instead of waiting.
    conn._lastActiveTime = 0;
    conn.heartbeat();
  }
  const deadline = Date.now() + responseTimeout;
  while (acked.length < sent.length && Date.now() < deadline) {
    await sleep(10);
  }
  const missing = sent.filter(id => !acked.includes(id));
  const unexpected = acked.filter(id => !sent.includes(id));
  return {
    ok: sent.length === n && missing.length === 0 && unexpected.length === 0,
    sent,
    acked,
    missing,
    unexpected,
    connection_open: !conn.isClosed,
  };
}

async function late(peer, ms) {
  const conn = peer.connections()[0];
  if (!conn) return { ok: false, error: 'no connection to the server' };
  const tap = new StatusTap(conn._socket, true);
  let slowId = null;
  const writeRequest = conn._encoder.writeRequest.bind(conn._encoder);
  conn._encoder.writeRequest = (id, req, cb) => {
    if (req.methodName === 'slow') slowId = id;
    return writeRequest(id, req, cb);
  };
  const start = Date.now();
  let slowError = null;
  let slowResult = null;
  try {
    slowResult = await peer.invoke('slow', [ ms ]);
  } catch (err) {
    slowError = errorText(err);
  }
  // Give an answer for the call (from a proxy) until well after the server would have replied.
  while (!tap.byId.has(slowId) && Date.now() < start + ms + 500) {
    await sleep(10);
  }
  const echoes = await seq(peer, 3);
  return {
    ok: slowError !== null && echoes.ok,
    slow_error: slowError,
    slow_result: slowResult,
    slow_response_status: tap.byId.has(slowId) ? tap.byId.get(slowId) : null,
    echoes_after: echoes.succeeded,
    connections: peer.connections().length,
  };
}

async function hold(peer, seconds) {
  const got = await peer.invoke('echo', [ 'hold' ]);
  const conn = peer.connections()[0];
  if (!conn) return { ok: false, error: 'no connection to the server' };
  const start = Date.now();
  const closed = new Promise(resolve => conn.once('close', () => resolve(true)));
  const closedByPeer = await Promise.race([ closed, sleep(seconds * 1000).then(() => false) ]);
  return { ok: got === 'hold', closed_by_peer: closedByPeer, held_ms: Date.now() - start };
}

/** Resolves once stdin delivers a line `stop` (never, if stdin ends without one). */
function stopRequested() {
  return new Promise(resolve => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', chunk => {
      text += chunk;
      if (text.split('\n').some(line => line.trim() === 'stop')) resolve();
    });
    process.stdin.on('error', () => {});
  });
}

async function load(peer, seconds, concurrency) {
  const conn = peer.connections()[0];
  const tap = conn ? new StatusTap(conn._socket) : null;
  const start = Date.now();
  const end = start + seconds * 1000;
  let stopped = false;
  stopRequested().then(() => { stopped = true; });
  const s = {
    succeeded: 0, errors: 0, timeouts: 0, overdue: 0, max_ms: 0,
    first_error_ms: null, last_error_ms: null, ok_after_last_error: 0, error_kinds: {}, wrong: 0,
  };
  const progress = setInterval(() => {
    emit({ progress: { t_ms: Date.now() - start, succeeded: s.succeeded, errors: s.errors, timeouts: s.timeouts } });
  }, 200);
  let seqNo = 0;
  async function worker() {
    while (!stopped && Date.now() < end) {
      const arg = `load-${seqNo++}`;
      const t0 = Date.now();
      try {
        const got = await peer.invoke('echo', [ arg ]);
        if (got === arg) {
          s.succeeded += 1;
          if (s.last_error_ms !== null) s.ok_after_last_error += 1;
        } else {
          s.wrong += 1;
        }
      } catch (err) {
        const now = Date.now() - start;
        s.errors += 1;
        s.ok_after_last_error = 0;
        if (s.first_error_ms === null) s.first_error_ms = now;
        s.last_error_ms = now;
        if (err.name === 'RpcResponseTimeoutError') s.timeouts += 1;
        const kind = errorKind(err);
        s.error_kinds[kind] = (s.error_kinds[kind] || 0) + 1;
        // A failing call may come back at once; don't spin the CPU against a dead server.
        await sleep(5);
      } finally {
        const took = Date.now() - t0;
        s.max_ms = Math.max(s.max_ms, took);
        // The library's own timer should end every call by responseTimeout; anything well past it hung.
        if (took > responseTimeout + 1000) s.overdue += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(progress);
  return Object.assign({
    ok: s.succeeded > 0 && s.wrong === 0 && s.overdue === 0,
    seconds,
    stopped,
    concurrency,
    response_timeout_ms: responseTimeout,
    connections: peer.connections().length,
    statuses: tap ? tap.counts : null,
    error_responses: tap ? tap.errorResponses : null,
  }, s);
}

function positiveInt(text, what) {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) fail(`${what} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

async function main() {
  // Never outlive a test: whatever the scenario, give up well after it should have ended.
  const budgetMs = 30000 + ({ load: 1000, hold: 1000, late: 1 }[scenario] || 0) * (Number(scenarioArg) || 0);
  setTimeout(() => fail(`scenario did not finish within ${budgetMs} ms`), budgetMs).unref();
  const peer = new Peer();
  await peer.ready();
  let result;
  switch (scenario) {
    case 'seq': result = await seq(peer, positiveInt(scenarioArg, 'seq N')); break;
    case 'concurrent': result = await concurrent(peer, positiveInt(scenarioArg, 'concurrent N')); break;
    case 'mixed': result = await mixed(peer, positiveInt(scenarioArg, 'mixed N')); break;
    case 'types': result = await types(peer); break;
    case 'throw': result = await throwScenario(peer); break;
    case 'heartbeat': result = await heartbeat(peer, scenarioArg ? positiveInt(scenarioArg, 'heartbeat N') : 3); break;
    case 'late': result = await late(peer, positiveInt(scenarioArg, 'late MS')); break;
    case 'hold': result = await hold(peer, positiveInt(scenarioArg, 'hold S')); break;
    case 'load': result = await load(peer, positiveInt(scenarioArg, 'load S'), positiveInt(opts.concurrency, '--concurrency')); break;
    default: fail(`unknown scenario ${JSON.stringify(scenario)} (seq N | concurrent N | mixed N | types | throw | heartbeat N | late MS | hold S | load S)`);
  }
  emit(Object.assign({ scenario, hessian: opts.hessian, server: opts.server }, result));
  await peer.client.close();
  process.exit(result.ok ? 0 : 1);
}

main().catch(err => fail(errorText(err)));
