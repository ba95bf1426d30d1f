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
      ? (extrasMade = loadExtras()({ OrigMap, OrigDate, jsonParse, jsonStringify, isOk, made, rare }))
      : extrasMade;
  // What only some runs need (rare.js: crypto, console, timers, the abort signal, `ctx`, module
  // mode's fetch and entry), loaded on first use the same way.
  const loadRare = native.rare;
  let rareMade;
  const rare = () =>
    rareMade === undefined
      ? (rareMade = loadRare()({
          OrigError, OrigPromise, OrigFunction, jsonStringify, nativeLog, nativeDuration, made,
          callSync, callAsync, call: (kind, req) => call(kind, req), isScript: () => script,
          input: () => input, taskName: () => taskName, toError, fetchRequest, signalOf, withHeaders,
          now, random, randomBytes,
        }))
      : rareMade;
  // Its classes, each made on first use (`made("Headers")`), and their globals: accessors that
  // make the class when code first names it (the `lazyGlobals` native), unless the backend has
  // its own. Creating every class up front costs more than the rest of a short session.
  // The prelude's own globals are made the same way, by a function that makes the global (or
  // the globals sharing state, as the timers) named: every closure of a global costs each run's
  // context, used or not.
  // (no prototype, here and in `classes`: what task code adds to Object.prototype is not ours)
  // the four timer globals share their ids and cancellations: made together
  const timers = () => rare().makeTimers();
  const own = {
    __proto__: null,
    console: () => rare().makeConsole(), crypto: () => rare().makeCrypto(), ctx: () => rare().makeCtx(),
    setTimeout: timers, setInterval: timers, clearTimeout: timers, clearInterval: timers,
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
  // crypto, console and the timers are rare.js's (made when first named, see `own`)

  // ---------------------------------------------------------------- Headers, URL, encoders
  if (!("structuredClone" in G)) defineGlobal("structuredClone", (v) => extras().structuredClone(v));
  defineGlobal("FetchError", FetchError);

  // ---------------------------------------------------------------- AbortSignal
  // (the class is extras.js's; the run's own signal, `ctx.signal`, rare.js's)
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
  // (module mode's `fetch` is rare.js's `asyncFetch`)

  // ---------------------------------------------------------------- the run (`ctx` is rare.js's)
  defineGlobal("__callHostTool__", (service, method, args) =>
    call("tool", { name: `${service}.${method}`, service: String(service), method: String(method), args: args === undefined ? null : args }),
  );
  // The run: script or module mode, its input (a global), its task name (for pickEntry).
  function begin(mode, inputJson, name) {
    script = mode === "script";
    call = script ? callSync : callAsync;
    taskName = name;
    defineGlobal("fetch", script ? syncFetch : rare().asyncFetch);
    input = jsonParse(inputJson);
    defineGlobal("input", input);
  }

  // ---------------------------------------------------------------- helpers for the backend
  // (module mode's entry and the script-mode object-tail check are rare.js's)
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
  const runModule = (evaluated, ns) => rare().runModule(evaluated, ns);
  const isObjectTail = (text, rewritten) => rare().isObjectTail(text, rewritten);
  return { begin, deliver, runModule, finish, toJson, isObjectTail };
}
