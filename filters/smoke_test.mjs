// Smoke test of the filter modules in a minimal proxy-wasm host written in JavaScript (Node's
// WebAssembly): instantiates each module from target/filters/wasm, drives the lifecycle
// (_initialize, context create, vm start, configure, request and response headers, tick) and
// checks what the filter did through the hostcalls it made. Run after `make filters`:
//   node filters/smoke_test.mjs [dir]
// It is a check of the guests, not a reference host: only the hostcalls these filters use do
// anything; every other proxy-wasm import answers Unimplemented (12).
import { existsSync, readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { WASI } from "node:wasi";
import assert from "node:assert/strict";

const dir = process.argv[2] ?? "target/filters/wasm";
const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, CAS_MISMATCH = 8, UNIMPLEMENTED = 12;
const HOSTCALLS = [
  "proxy_log", "proxy_get_log_level", "proxy_get_current_time_nanoseconds",
  "proxy_set_tick_period_milliseconds", "proxy_get_buffer_bytes", "proxy_set_buffer_bytes",
  "proxy_get_header_map_pairs", "proxy_set_header_map_pairs", "proxy_get_header_map_value",
  "proxy_add_header_map_value", "proxy_replace_header_map_value", "proxy_remove_header_map_value",
  "proxy_get_property", "proxy_set_property", "proxy_get_shared_data", "proxy_set_shared_data",
  "proxy_register_shared_queue", "proxy_resolve_shared_queue", "proxy_dequeue_shared_queue",
  "proxy_enqueue_shared_queue", "proxy_continue_stream", "proxy_close_stream",
  "proxy_send_local_response", "proxy_http_call", "proxy_grpc_call", "proxy_grpc_stream",
  "proxy_grpc_send", "proxy_grpc_cancel", "proxy_grpc_close", "proxy_get_status",
  "proxy_set_effective_context", "proxy_call_foreign_function", "proxy_done",
  "proxy_define_metric", "proxy_get_metric", "proxy_record_metric", "proxy_increment_metric",
];

function uleb(bytes, at) {
  let value = 0, shift = 0, b;
  do { b = bytes[at++]; value += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
  return [value, at];
}
function encodeUleb(value) {
  const out = [];
  do { let b = value & 0x7f; value = Math.floor(value / 128); if (value) b |= 0x80; out.push(b); }
  while (value);
  return out;
}

/** The module with its (single, defined) memory given a maximum of `pages` 64 KiB pages. */
function limitMemory(bytes, pages) {
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, body] = uleb(bytes, at + 1);
    if (id === 5) {
      const [count, limits] = uleb(bytes, body);
      assert.equal(count, 1); assert.equal(bytes[limits] & 1, 0, "memory already has a maximum");
      const [min] = uleb(bytes, limits + 1);
      const section = [1, 1, ...encodeUleb(min), ...encodeUleb(pages)];
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([5, ...encodeUleb(section.length),
        ...section]), bytes.subarray(body + size)]);
    }
    at = body + size;
  }
  throw new Error("no memory section");
}

/** Shared between every VM of one test, like a host's shared data and metrics. */
class Shared {
  constructor() { this.data = new Map(); this.nextCas = 1; this.metrics = []; this.casFailures = 0; }
}

/** One VM: a module instance plus the host state its hostcalls see. */
class Vm {
  constructor(file, { config = null, shared = new Shared(), omit = [], reenter = false,
    realWasi = false, maxPages = 0 } = {}) {
    this.config = config; this.shared = shared; this.reenter = reenter;
    this.logs = []; this.maps = [[], [], [], []]; this.local = null; this.tick = null;
    this.effective = 0; this.resumed = []; this.live = new Set();
    const text = (p, n) => Buffer.from(this.mem().subarray(p, p + n)).toString("utf8");
    const u32 = (p, v) => new DataView(this.memory.buffer).setUint32(p, v, true);
    const give = (bytes, pp, sp) => {
      const p = bytes.length ? this.alloc(bytes.length) >>> 0 : 0;
      this.mem().set(bytes, p); u32(pp, p); u32(sp, bytes.length);
    };
    const env = {};
    for (const name of HOSTCALLS) env[name] = () => UNIMPLEMENTED;
    Object.assign(env, {
      proxy_log: (level, p, n) => { this.logs.push([level, text(p, n)]); return OK; },
      proxy_set_tick_period_milliseconds: (ms) => { this.tick = ms; return OK; },
      proxy_get_buffer_bytes: (type, start, max, pp, sp) => {
        if (type !== 7 || this.config === null) return NOT_FOUND;
        give(Buffer.from(this.config), pp, sp); return OK;
      },
      proxy_get_header_map_value: (map, kp, kn, pp, sp) => {
        const key = text(kp, kn), hit = this.maps[map].find(([k]) => k === key);
        if (!hit) return NOT_FOUND;
        give(Buffer.from(hit[1]), pp, sp); return OK;
      },
      proxy_add_header_map_value: (map, kp, kn, vp, vn) => {
        this.maps[map].push([text(kp, kn), text(vp, vn)]); return OK;
      },
      proxy_send_local_response: (status, dp, dn, bp, bn, hp, hn, grpc) => {
        const h = Buffer.from(this.mem().subarray(hp, hp + hn)), headers = [];
        const count = h.readUInt32LE(0); let at = 4 + count * 8;
        for (let i = 0; i < count; i++) {
          const kl = h.readUInt32LE(4 + i * 8), vl = h.readUInt32LE(8 + i * 8);
          const k = h.subarray(at, at + kl).toString(); at += kl + 1;
          const v = h.subarray(at, at + vl).toString(); at += vl + 1;
          headers.push([k, v]);
        }
        this.local = { status, body: text(bp, bn), headers, grpc };
        // A host that runs the response phase right away re-enters the guest.
        if (this.reenter) this.exports.proxy_on_response_headers(this.effective, 0, 1);
        return OK;
      },
      proxy_get_shared_data: (kp, kn, pp, sp, cp) => {
        const hit = this.shared.data.get(text(kp, kn));
        if (!hit) return NOT_FOUND;
        give(Buffer.from(hit.value), pp, sp); u32(cp, hit.cas); return OK;
      },
      proxy_set_shared_data: (kp, kn, vp, vn, cas) => {
        const key = text(kp, kn), hit = this.shared.data.get(key);
        if (this.shared.casFailures > 0) { this.shared.casFailures--; return CAS_MISMATCH; }
        if (cas !== 0 && hit && hit.cas !== cas) return CAS_MISMATCH;
        this.shared.data.set(key, { value: text(vp, vn), cas: this.shared.nextCas++ }); return OK;
      },
      proxy_define_metric: (type, np, nn, ip) => {
        this.shared.metrics.push({ type, name: text(np, nn), value: 0n });
        u32(ip, this.shared.metrics.length); return OK;
      },
      proxy_increment_metric: (id, by) => {
        const m = this.shared.metrics[id - 1]; if (!m) return NOT_FOUND;
        m.value += by; return OK;
      },
      proxy_record_metric: (id, v) => {
        const m = this.shared.metrics[id - 1]; if (!m) return NOT_FOUND;
        m.value = v; return OK;
      },
      proxy_set_effective_context: (id) => {
        if (!this.live.has(id)) return BAD_ARGUMENT;
        this.effective = id; return OK;
      },
      proxy_continue_stream: (type) => { this.resumed.push([this.effective, type]); return OK; },
    });
    for (const name of omit) delete env[name];
    if (!omit.length) env.proxy_no_such_hostcall = (x) => x;
    // The WASI calls the Rust modules import: an empty environment, stderr output kept in
    // this.stderr, proc_exit as an error.
    this.stderr = "";
    const wasi = {
      environ_sizes_get: (countp, sizep) => { u32(countp, 0); u32(sizep, 0); return 0; },
      environ_get: () => 0,
      fd_write: (fd, iovs, n, writtenp) => {
        const view = new DataView(this.memory.buffer); let total = 0;
        for (let i = 0; i < n; i++) {
          const p = view.getUint32(iovs + i * 8, true), len = view.getUint32(iovs + i * 8 + 4, true);
          this.stderr += text(p, len); total += len;
        }
        u32(writtenp, total); return 0;
      },
      proc_exit: (code) => { throw new Error(`proc_exit(${code})`); },
    };
    // The Go runtime needs working WASI calls (clock, random, args, environment) to start.
    const node = realWasi ? new WASI({ version: "preview1", args: [], env: {} }) : null;
    let bytes = readFileSync(file);
    if (maxPages) bytes = limitMemory(bytes, maxPages);
    const module = new WebAssembly.Module(bytes);
    this.instance = new WebAssembly.Instance(module,
      { env, wasi_snapshot_preview1: node ? node.wasiImport : wasi });
    this.exports = this.instance.exports; this.memory = this.exports.memory;
    this.alloc = this.exports.proxy_on_memory_allocate ?? this.exports.malloc;
    this.wasi = node;
  }
  mem() { return new Uint8Array(this.memory.buffer); }
  /** _initialize, root context 1, vm start, configure; returns configure's answer. */
  start() {
    if (this.wasi) this.wasi.initialize(this.instance); // calls _initialize
    else this.exports._initialize();
    this.exports.proxy_on_context_create(1, 0); this.live.add(1); this.effective = 1;
    assert.equal(this.exports.proxy_on_vm_start(1, 0), 1);
    return this.exports.proxy_on_configure(1, this.config ? this.config.length : 0);
  }
  /** A request on context `id` with `headers`: returns the request-headers action. */
  request(id, headers = [], abi010 = false) {
    this.maps[0] = [...headers]; this.maps[2] = []; this.local = null;
    this.exports.proxy_on_context_create(id, 1); this.live.add(id); this.effective = id;
    return abi010 ? this.exports.proxy_on_request_headers(id, headers.length)
      : this.exports.proxy_on_request_headers(id, headers.length, 1);
  }
  response(id) { this.effective = id; return this.exports.proxy_on_response_headers(id, 0, 1); }
  finish(id) {
    this.effective = id; this.exports.proxy_on_done(id); this.exports.proxy_on_log(id);
    this.exports.proxy_on_delete(id); this.live.delete(id);
  }
  header(map, key) { return this.maps[map].find(([k]) => k === key)?.[1]; }
}

const file = (n) => `${dir}/filter_${n}.wasm`;
const goFile = `${dir}/go_add_header.wasm`;
const tests = {
  add_header() {
    let vm = new Vm(file("add_header"));
    assert.equal(vm.start(), 1);
    assert.equal(vm.request(2, [["service", "demo"]]), 0);
    assert.equal(vm.header(0, "x-filter-added"), "by-filter");
    assert.equal(vm.response(2), 0);
    assert.equal(vm.header(2, "x-filter-seen"), "1");
    vm.finish(2);
    vm = new Vm(file("add_header"), { config: '{"name": "x-a", "value": "b"}' });
    assert.equal(vm.start(), 1); vm.request(2); assert.equal(vm.header(0, "x-a"), "b");
    vm = new Vm(file("add_header"), { config: "{not json" });
    assert.equal(vm.start(), 0); assert.equal(vm.logs.at(-1)[0], 4);
  },
  deny() {
    const vm = new Vm(file("deny"));
    assert.equal(vm.start(), 1);
    assert.equal(vm.request(2, [["x-deny", "no"]]), 0);
    assert.equal(vm.local, null);
    assert.equal(vm.request(3, [["x-deny", "yes"]]), 1);
    assert.deepEqual(vm.local, { status: 403, body: "denied by filter",
      headers: [["x-deny-reason", "header"]], grpc: -1 });
    const custom = new Vm(file("deny"), { config: '{"header": "h", "value": "v", "status": 429, "body": ""}' });
    assert.equal(custom.start(), 1);
    assert.equal(custom.request(2, [["h", "v"]]), 1);
    assert.equal(custom.local.status, 429);
    assert.equal(new Vm(file("deny"), { config: '{"status": "x"}' }).start(), 0);
  },
  deny_reentrant() {
    // The response phase run from inside proxy_send_local_response re-enters the context
    // whose on_http_request_headers is still running: the crate's dispatcher traps.
    const vm = new Vm(file("deny"), { reenter: true });
    assert.equal(vm.start(), 1);
    assert.throws(() => vm.request(2, [["x-deny", "yes"]]), WebAssembly.RuntimeError);
    assert.match(vm.logs.at(-1)[1], /already (mutably )?borrowed/);
  },
  count() {
    const shared = new Shared();
    const a = new Vm(file("count"), { shared }), b = new Vm(file("count"), { shared });
    assert.equal(a.start(), 1); assert.equal(b.start(), 1);
    a.request(2); assert.equal(a.header(0, "x-call-count"), "1");
    b.request(2); assert.equal(b.header(0, "x-call-count"), "2");
    shared.casFailures = 3;
    a.request(3); assert.equal(a.header(0, "x-call-count"), "3");
    assert.equal(shared.data.get("calls").value, "3");
    const calls = shared.metrics.filter((m) => m.name === "filter_count_calls");
    assert.equal(calls.length, 2); // one definition per VM
    assert.equal(calls.reduce((s, m) => s + m.value, 0n), 3n);
    assert.equal(shared.metrics.find((m) => m.name === "filter_count_last" && m.value === 3n).type, 1);
    shared.casFailures = 1000;
    a.request(4); assert.equal(a.header(0, "x-call-count"), undefined);
    assert.match(a.logs.at(-1)[1], /gave up/);
    const keyed = new Vm(file("count"), { shared, config: '{"key": "other"}' });
    shared.casFailures = 0; keyed.start(); keyed.request(2);
    assert.equal(shared.data.get("other").value, "1");
  },
  pause() {
    const vm = new Vm(file("pause"));
    assert.equal(vm.start(), 1); assert.equal(vm.tick, 20);
    assert.equal(vm.request(2), 1); assert.equal(vm.header(0, "x-paused"), "1");
    assert.equal(vm.request(3), 1);
    vm.live.delete(3); // gone before the tick
    vm.effective = 1; vm.exports.proxy_on_tick(1);
    assert.deepEqual(vm.resumed, [[2, 0]]);
    assert.match(vm.logs.at(-1)[1], /context 3 is gone/);
    vm.exports.proxy_on_tick(1); assert.equal(vm.resumed.length, 1);
    const slow = new Vm(file("pause"), { config: '{"tick_ms": 250}' });
    assert.equal(slow.start(), 1); assert.equal(slow.tick, 250);
  },
  noop() {
    const vm = new Vm(file("noop"));
    assert.equal(vm.start(), 1); assert.equal(vm.request(2), 0); assert.equal(vm.response(2), 0);
    vm.finish(2);
  },
  misbehave() {
    const vm = new Vm(file("misbehave"));
    assert.equal(vm.start(), 1); assert.equal(vm.request(2), 0);
    assert.throws(() => vm.request(3, [["x-misbehave", ""]]), /unreachable/);
    assert.equal(new Vm(file("misbehave"), { config: '{"mode": "bogus"}' }).start(), 0);
    // oom grows linear memory up to the host's limit: here the module's memory is given a
    // maximum of 64 MiB, so the allocation failure (an abort, a trap) comes quickly.
    const oom = new Vm(file("misbehave"), { config: '{"mode": "oom"}', maxPages: 1024 });
    assert.equal(oom.start(), 1); assert.equal(oom.request(2), 0);
    assert.throws(() => oom.request(3, [["x-misbehave", "1"]]), WebAssembly.RuntimeError);
    assert.match(oom.stderr, /memory allocation of \d+ bytes failed/);
    assert.ok(oom.memory.buffer.byteLength > 60 * 2 ** 20, "memory did not grow to the limit");
  },
  async misbehave_loop() {
    const worker = new Worker(new URL(import.meta.url), { workerData: "loop", argv: [dir] });
    let done = false; worker.on("exit", () => { done = true; }); worker.on("error", () => {});
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(done, false, "the loop mode returned");
    await worker.terminate();
  },
  unknown_import() {
    assert.throws(() => new Vm(file("unknown_import"), { omit: ["proxy_no_such_hostcall"] }),
      /proxy_no_such_hostcall/);
    const vm = new Vm(file("unknown_import")); // with the import provided it works
    assert.equal(vm.start(), 1); vm.request(2, [["a", "b"]]);
    assert.equal(vm.header(0, "x-unknown-import"), "1");
  },
  abi010() {
    const vm = new Vm(file("abi010"));
    assert.ok(vm.exports.proxy_abi_version_0_1_0 && vm.exports.malloc);
    assert.equal(vm.start(), 1);
    assert.equal(vm.request(2, [["service", "demo"]], true), 0);
    assert.equal(vm.header(0, "x-abi"), "0.1.0");
    assert.equal(vm.exports.proxy_on_response_headers(2, 0), 0);
    vm.finish(2);
    assert.ok(vm.exports.malloc(64) > 0);
  },
  go_add_header() {
    if (!existsSync(goFile)) return "skipped (no go_add_header.wasm)";
    const vm = new Vm(goFile, { realWasi: true });
    assert.equal(vm.start(), 1);
    for (let id = 2; id < 202; id++) {
      assert.equal(vm.request(id, [["service", "demo"]]), 0);
      assert.equal(vm.header(0, "x-go-filter"), "1");
      assert.equal(vm.response(id), 0);
      vm.finish(id);
    }
    const p = vm.alloc(1 << 20); assert.ok(p > 0);
    vm.mem().fill(7, p, p + (1 << 20));
  },
};

const { isMainThread, workerData } = await import("node:worker_threads");
if (!isMainThread && workerData === "loop") {
  const vm = new Vm(file("misbehave"), { config: '{"mode": "loop"}' });
  vm.start(); vm.request(2, [["x-misbehave", "1"]]);
} else {
  let failed = 0;
  for (const [name, test] of Object.entries(tests)) {
    try { const note = await test(); console.log(`ok   ${name}${note ? ` ${note}` : ""}`); }
    catch (e) { failed++; console.log(`FAIL ${name}: ${e.stack}`); }
  }
  console.log(`${Object.keys(tests).length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
