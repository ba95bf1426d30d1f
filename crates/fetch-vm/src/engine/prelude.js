// fetch-vm JavaScript glue, shared by every engine backend. Evaluated before the task code.
// An ES module whose default export receives the natives (request, wait, log, duration, extras:
// the default export of `extras.js`, loaded on first use, defineGlobal and lazyGlobals) and returns the
// helpers the backend calls. Backends may compile it once and reuse the bytecode,
// and may call it before the run is known (ahead of time, in a context no code has run in):
// nothing here depends on the run until `begin(mode, inputJson, taskName)`, which the backend
// calls once, right before the task code.
export default function (native) {
  "use strict";
  const G = globalThis;
  // set by begin()
  let script = false, taskName = "", input;
  const request = native.request, wait = native.wait, nativeLog = native.log, nativeDuration = native.duration;
  const jsonParse = JSON.parse, jsonStringify = JSON.stringify;
  const OrigDate = Date, OrigPromise = Promise, OrigMap = Map, OrigError = Error, OrigFunction = Function;
  const pending = new OrigMap();
  // The rarely used classes and helpers (extras.js), loaded on first use.
  const loadExtras = native.extras;
  let extrasMade;
  const extras = () =>
    extrasMade === undefined
      ? (extrasMade = loadExtras()({
          OrigMap, OrigDate, jsonParse, jsonStringify, isOk, SIGNAL_KEY, fireAbort, abortError, made,
        }))
      : extrasMade;
  // Its classes, each made on first use (`made("Headers")`), and their globals: accessors that
  // make the class when code first names it (the `lazyGlobals` native), unless the backend has
  // its own. Creating every class up front costs more than the rest of a short session.
  // The prelude's own globals are made the same way, by a function that makes the global (or
  // the globals sharing state, as the timers) named: every closure of a global costs each run's
  // context, used or not.
  // (no prototype, here and in `classes`: what task code adds to Object.prototype is not ours)
  const own = {
    __proto__: null,
    console: makeConsole, crypto: makeCrypto, ctx: makeCtx,
    setTimeout: makeTimers, setInterval: makeTimers, clearTimeout: makeTimers, clearInterval: makeTimers,
  };
  const classes = { __proto__: null };
  const made = (name) =>
    classes[name] !== undefined
      ? classes[name]
      : (classes[name] = own[name] !== undefined ? own[name]()[name] : extras()[name]());
  native.lazyGlobals(
    ["Headers", "URLSearchParams", "URL", "TextEncoder", "TextDecoder", "AbortSignal", "AbortController",
      "Request", "Response", ...Object.keys(own)].filter((n) => !(n in G)),
    made,
  );
  const defineGlobal = native.defineGlobal;
  // ---------------------------------------------------------------- errors
  class FetchError extends OrigError {
    constructor(message, fields) {
      super(message);
      this.name = "FetchError";
      if (fields) {
        this.status = fields.status;
        this.statusText = fields.statusText;
        this.data = fields.data;
      }
    }
  }
  function toError(info) {
    if (!info || typeof info !== "object") return new OrigError(String(info));
    const details = info.details && typeof info.details === "object" ? info.details : {};
    let e;
    if (info.name === "FetchError") e = new FetchError(info.message, details);
    else if (info.name === "TypeError") e = new TypeError(info.message);
    else if (info.name === "RangeError") e = new RangeError(info.message);
    else {
      e = new OrigError(info.message);
      if (info.name) e.name = info.name;
    }
    for (const k of Object.keys(details)) if (!(k in e)) e[k] = details[k];
    return e;
  }

  // ---------------------------------------------------------------- host calls
  function settle(ok, json) {
    const v = json === "" ? undefined : jsonParse(json);
    if (ok) return v;
    throw toError(v);
  }
  function deliver(seq, ok, json) {
    const p = pending.get(seq);
    if (!p) return;
    pending.delete(seq);
    let v;
    try {
      v = settle(ok, json);
    } catch (e) {
      p.reject(e);
      return;
    }
    p.resolve(v);
  }
  function enc(req) {
    return jsonStringify(req === undefined ? null : req);
  }
  function callSync(kind, req) {
    const seq = request(kind, enc(req));
    for (;;) {
      const r = wait();
      if (r[0] === seq) return settle(r[1], r[2]);
      deliver(r[0], r[1], r[2]);
    }
  }
  function callAsync(kind, req) {
    const seq = request(kind, enc(req));
    return new OrigPromise((resolve, reject) => pending.set(seq, { resolve, reject }));
  }
  let call = callAsync;

  // ---------------------------------------------------------------- clock and randomness
  function randomBytes(n) {
    const hex = callSync("random", { bytes: n });
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16) || 0;
    return out;
  }
  function now() {
    return callSync("now", {});
  }
  function random() {
    const b = randomBytes(7);
    let x = b[0] & 0x1f;
    for (let i = 1; i < 7; i++) x = x * 256 + b[i];
    return x / 9007199254740992;
  }
  function JournaledDate(...args) {
    if (!new.target) return new OrigDate(now()).toString();
    return args.length === 0 ? new OrigDate(now()) : new OrigDate(...args);
  }
  JournaledDate.prototype = OrigDate.prototype;
  JournaledDate.now = now;
  JournaledDate.parse = OrigDate.parse;
  JournaledDate.UTC = OrigDate.UTC;
  Object.defineProperty(OrigDate.prototype, "constructor", { value: JournaledDate, writable: true, configurable: true });
  defineGlobal("Date", JournaledDate);
  Math.random = random;
  // performance.now() is journaled like Date.now() (ms since the epoch, timeOrigin 0); the
  // GC-timing-dependent WeakRef/FinalizationRegistry would make replays diverge, so they are gone.
  defineGlobal("performance", Object.freeze({ now, timeOrigin: 0, toJSON: () => ({ timeOrigin: 0 }) }));
  delete G.WeakRef;
  delete G.FinalizationRegistry;
  function makeCrypto() {
    const hex2 = (b) => (b < 16 ? "0" : "") + b.toString(16);
    const crypto = {
      randomUUID() {
        const b = randomBytes(16);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        const h = Array.from(b, hex2).join("");
        return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
      },
      getRandomValues(arr) {
        if (!arr || !ArrayBuffer.isView(arr)) throw new TypeError("crypto.getRandomValues: expected a typed array");
        if (arr.byteLength > 65536) throw new RangeError("crypto.getRandomValues: at most 65536 bytes");
        const b = randomBytes(arr.byteLength);
        new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).set(b);
        return arr;
      },
    };
    return { crypto };
  }

  // ---------------------------------------------------------------- console
  function show(v, depth) {
    if (typeof v === "string") return v;
    if (v instanceof OrigError) return `${v.name}: ${v.message}`;
    if (typeof v === "function") return `[Function ${v.name || "anonymous"}]`;
    if (typeof v === "bigint") return `${v}n`;
    if (typeof v === "symbol" || v === undefined) return String(v);
    try {
      const s = jsonStringify(v);
      return s === undefined ? String(v) : s;
    } catch (_) {
      return String(v);
    }
  }
  function makeConsole() {
    const console = {};
    for (const level of ["log", "info", "warn", "error", "debug", "trace"]) {
      console[level] = (...args) => {
        nativeLog(level, args.map((a) => show(a)).join(" "));
      };
    }
    return { console };
  }

  // ---------------------------------------------------------------- durations, timers
  // A number is milliseconds; a string is read by the host's one duration grammar ("250ms",
  // "1.5s", "1h 30m", "7d", "1 week"), which throws a TypeError naming `what` otherwise.
  function parseDuration(d, what) {
    if (typeof d === "number" && isFinite(d) && d >= 0) return Math.round(d);
    return nativeDuration(what, typeof d === "string" ? d : undefined, show(d));
  }
  // the four timer globals share their ids and cancellations: made together
  let timers;
  function makeTimers() {
    if (timers !== undefined) return timers;
    let timerId = 0;
    const cancelled = new Set();
    const setTimeout = (fn, ms, ...args) => {
      const id = ++timerId;
      callAsync("sleep", { ms: Math.max(0, Math.round(Number(ms) || 0)) }).then(() => {
        if (!cancelled.has(id) && typeof fn === "function") fn(...args);
      });
      return id;
    };
    const setInterval = (fn, ms, ...args) => {
      const id = ++timerId;
      const period = Math.max(0, Math.round(Number(ms) || 0));
      const tick = () =>
        callAsync("sleep", { ms: period }).then(() => {
          if (cancelled.has(id)) return;
          if (typeof fn === "function") fn(...args);
          tick();
        });
      tick();
      return id;
    };
    const clearTimeout = (id) => cancelled.add(id), clearInterval = clearTimeout;
    return (timers = { setTimeout, setInterval, clearTimeout, clearInterval });
  }

  // ---------------------------------------------------------------- Headers, URL, encoders
  if (!("structuredClone" in G)) defineGlobal("structuredClone", (v) => extras().structuredClone(v));
  defineGlobal("FetchError", FetchError);

  // ---------------------------------------------------------------- AbortSignal
  // `ctx.signal` fires when the run is aborted (killed, or a stop's timeout expired): the host
  // answers its `abort` call, so the abort is a journaled fact a replay meets at the same point.
  const SIGNAL_KEY = {};
  function abortError(message) {
    const e = new OrigError(message);
    e.name = "AbortError";
    e.code = 20;
    return e;
  }
  function fireAbort(signal, reason) {
    if (signal._aborted) return;
    signal._aborted = true;
    signal._reason = reason;
    const event = { type: "abort", target: signal, currentTarget: signal };
    const listeners = signal._listeners.slice();
    signal._listeners = signal._listeners.filter((l) => !l.once);
    const handlers = typeof signal.onabort === "function" ? [signal.onabort] : [];
    for (const l of listeners) handlers.push(l.fn);
    for (const fn of handlers) {
      try {
        if (typeof fn === "function") fn.call(signal, event);
        else if (fn && typeof fn.handleEvent === "function") fn.handleEvent(event);
      } catch (e) {
        // as in browsers: a listener that throws is reported, the others still run
        nativeLog("error", `an abort listener threw: ${show(e)}`);
      }
    }
  }
  let runSignal;
  function ctxSignal() {
    if (runSignal === undefined) {
      runSignal = new (made("AbortSignal"))(SIGNAL_KEY);
      const s = runSignal;
      // a host without aborts answers with an error: the signal then never fires
      callAsync("abort", {}).then(
        (why) => fireAbort(s, toError(why && typeof why === "object" ? why : { name: "AbortError", message: "the run was aborted" })),
        () => {},
      );
    }
    return runSignal;
  }
  // The `signal` of fetch options (or of a Request): an AbortSignal, or nothing.
  function signalOf(input, init) {
    let s = init !== undefined && init !== null && typeof init === "object" ? init.signal : undefined;
    if ((s === undefined || s === null) && input !== null && typeof input === "object" && input._init) s = input._init.signal;
    if (s === undefined || s === null) return null;
    if (!(s instanceof made("AbortSignal"))) throw new TypeError("fetch: options.signal must be an AbortSignal (ctx.signal or an AbortController's signal)");
    return s;
  }

  // ---------------------------------------------------------------- fetch
  function fetchRequest(input, init) {
    let url = input;
    if (typeof input === "object" && input !== null) {
      if (input instanceof made("Request")) {
        url = input.url;
        init = Object.assign({}, input._init, init || {});
      } else if (input instanceof made("URL") || typeof input.href === "string") url = input.href;
    }
    if (typeof url !== "string")
      throw new TypeError(`fetch: the URL must be a string, URL or Request, got ${url === null ? "null" : typeof url}`);
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url);
    const scheme = m ? m[1].toLowerCase() : "";
    // a relative URL is passed on as written: the host resolves it (external mode against
    // options.baseUrl, the engine against the task's baseUrl)
    if (scheme !== "" && scheme !== "http" && scheme !== "https" && scheme !== "data")
      throw new TypeError(`fetch: unsupported URL ${jsonStringify(url)}: only http:, https:, data: and relative URLs can be fetched`);
    let options = {};
    if (init !== undefined && init !== null) {
      if (typeof init !== "object") throw new TypeError(`fetch: options must be an object, got ${typeof init}`);
      // the signal stays in JavaScript (see signalOf); only data goes to the host
      options = jsonParse(jsonStringify(init, function (k, v) { return this === init && k === "signal" ? undefined : v; }));
    }
    return { url, options };
  }
  function headerOf(headers, name) {
    if (!headers || typeof headers !== "object") return null;
    for (const k of Object.keys(headers)) if (k.toLowerCase() === name) return String(headers[k]);
    return null;
  }
  // A fetch result's headers come as JSON text (`headersJson`), parsed when first asked for.
  function withHeaders(r) {
    if (r && typeof r.headersJson === "string") {
      r.headers = jsonParse(r.headersJson);
      delete r.headersJson;
    }
    return r;
  }
  function bodyOf(r) {
    const data = r.data;
    if (typeof data !== "string") return data === undefined ? null : data;
    const ct = headerOf(withHeaders(r).headers, "content-type");
    const jsonish = ct === null ? /^\s*[\[{"]/.test(data) : /json/i.test(ct);
    if (jsonish) {
      try {
        return jsonParse(data);
      } catch (e) {
        if (ct !== null) throw e;
      }
    }
    return data;
  }
  const isOk = (status) => status >= 200 && status <= 299;
  function syncFetch(input, init) {
    const req = fetchRequest(input, init);
    const signal = signalOf(input, init);
    if (signal && signal.aborted) throw signal.reason;
    const r = callSync("fetch", req) || {};
    const data = bodyOf(r);
    const status = typeof r.status === "number" ? r.status : 200;
    if (!isOk(status)) {
      const statusText = r.statusText === undefined ? "" : String(r.statusText);
      throw new FetchError(`HTTP ${status}${statusText ? ` ${statusText}` : ""} for ${req.url}`, { status, statusText, data });
    }
    return data;
  }
  function asyncFetch(input, init) {
    let req, signal;
    try {
      req = fetchRequest(input, init);
      signal = signalOf(input, init);
    } catch (e) {
      return OrigPromise.reject(e);
    }
    if (signal && signal.aborted) return OrigPromise.reject(signal.reason);
    const p = callAsync("fetch", req).then((r) => new (made("Response"))(Object.assign({ url: req.url }, withHeaders(r))));
    if (!signal) return p;
    return new OrigPromise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(
        (v) => { signal.removeEventListener("abort", onAbort); resolve(v); },
        (e) => { signal.removeEventListener("abort", onAbort); reject(e); },
      );
    });
  }

  // ---------------------------------------------------------------- ctx
  function makeCtx() {
    const ctx = Object.freeze({
      get signal() {
        return ctxSignal();
      },
      sleep(d) {
        const r = call("sleep", { ms: parseDuration(d, "ctx.sleep") });
        return script ? undefined : r.then(() => undefined);
      },
      waitForEvent(name, opts) {
        const req = { name: String(name) };
        if (opts && opts.timeout !== undefined && opts.timeout !== null) req.timeoutMs = parseDuration(opts.timeout, "ctx.waitForEvent timeout");
        return call("waitForEvent", req);
      },
      emit(name, data) {
        return call("emit", { name: String(name), data: data === undefined ? null : data });
      },
      callTool(name, args) {
        return call("tool", { name: String(name), args: args === undefined ? null : args });
      },
      runTask(name, input) {
        return call("child", { task: String(name), input: input === undefined ? null : input });
      },
      now() {
        return script ? now() : OrigPromise.resolve(now());
      },
      random() {
        return script ? random() : OrigPromise.resolve(random());
      },
    });
    return { ctx };
  }
  defineGlobal("__callHostTool__", (service, method, args) =>
    call("tool", { name: `${service}.${method}`, service: String(service), method: String(method), args: args === undefined ? null : args }),
  );
  // The run: script or module mode, its input (a global), its task name (for pickEntry).
  function begin(mode, inputJson, name) {
    script = mode === "script";
    call = script ? callSync : callAsync;
    taskName = name;
    defineGlobal("fetch", script ? syncFetch : asyncFetch);
    input = jsonParse(inputJson);
    defineGlobal("input", input);
  }

  // ---------------------------------------------------------------- helpers for the backend
  function pickEntry(ns) {
    if (typeof ns.default === "function") return ns.default;
    if (taskName) {
      const words = String(taskName).split(/[^A-Za-z0-9]+/).filter(Boolean);
      const camel = words.map((w, i) => (i === 0 ? w[0].toLowerCase() : w[0].toUpperCase()) + w.slice(1)).join("");
      const snake = words.map((w) => w.toLowerCase()).join("_");
      for (const k of [camel, snake]) if (k && typeof ns[k] === "function") return ns[k];
    }
    const fns = Object.keys(ns).filter((k) => typeof ns[k] === "function");
    if (fns.length === 1) return ns[fns[0]];
    throw new TypeError(
      `the module has no entry: write \`export default async function (input, ctx) { … }\`` +
        (fns.length ? ` (it exports several functions: ${fns.join(", ")})` : ""),
    );
  }
  async function runModule(evaluated, ns) {
    await evaluated;
    return pickEntry(ns)(input, made("ctx"));
  }
  function finish(value) {
    return OrigPromise.resolve(value);
  }
  function toJson(v) {
    try {
      const s = jsonStringify(v, function (k, x) {
        const t = typeof x;
        const where = k === "" ? "the result" : `key ${jsonStringify(k)}`;
        if (t === "function") throw new TypeError(`${where} is a function`);
        if (t === "bigint") throw new TypeError(`${where} is a BigInt (${x}n)`);
        if (t === "symbol") throw new TypeError(`${where} is a symbol`);
        return x;
      });
      return [true, s === undefined ? "null" : s];
    } catch (e) {
      const msg = e && e.message ? String(e.message) : String(e);
      return [false, /circular/i.test(msg) ? `it contains a cycle (${msg})` : msg];
    }
  }
  // Node-REPL rule for a final `{ … }` statement: it is an object literal when it parses as an
  // expression and the program still parses with it parenthesized (compile only, nothing runs).
  function isObjectTail(text, rewritten) {
    try {
      new OrigFunction(`return (\n${text}\n);`);
      new OrigFunction(rewritten);
      return true;
    } catch (_) {
      return false;
    }
  }
  return { begin, deliver, runModule, finish, toJson, isObjectTail };
}
