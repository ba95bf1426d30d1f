// fetch-vm JavaScript glue, shared by every engine backend. Evaluated before the task code.
// An ES module whose default export receives four natives (request, wait, log, duration) and
// returns the helpers the backend calls. Backends may compile it once and reuse the bytecode,
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
  // Rarely used globals are built on first use: creating every class up front costs more than
  // the rest of a short session.
  const lazy = (name, make) => {
    let value;
    const get = () => (value === undefined ? (value = make()) : value);
    if (!(name in G))
      Object.defineProperty(G, name, {
        get,
        set(v) { Object.defineProperty(G, name, { value: v, writable: true, configurable: true }); },
        configurable: true,
        enumerable: false,
      });
    return get;
  };
  const defineGlobal = (name, value) =>
    Object.defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });

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
  const hex2 = (b) => (b < 16 ? "0" : "") + b.toString(16);
  const cryptoObj = {
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
  defineGlobal("crypto", cryptoObj);

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
  const consoleObj = {};
  for (const level of ["log", "info", "warn", "error", "debug", "trace"]) {
    consoleObj[level] = (...args) => {
      nativeLog(level, args.map((a) => show(a)).join(" "));
    };
  }
  defineGlobal("console", consoleObj);

  // ---------------------------------------------------------------- durations, timers
  // A number is milliseconds; a string is read by the host's one duration grammar ("250ms",
  // "1.5s", "1h 30m", "7d", "1 week"), which throws a TypeError naming `what` otherwise.
  function parseDuration(d, what) {
    if (typeof d === "number" && isFinite(d) && d >= 0) return Math.round(d);
    return nativeDuration(what, typeof d === "string" ? d : undefined, show(d));
  }
  let timerId = 0;
  const cancelled = new Set();
  defineGlobal("setTimeout", (fn, ms, ...args) => {
    const id = ++timerId;
    callAsync("sleep", { ms: Math.max(0, Math.round(Number(ms) || 0)) }).then(() => {
      if (!cancelled.has(id) && typeof fn === "function") fn(...args);
    });
    return id;
  });
  defineGlobal("setInterval", (fn, ms, ...args) => {
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
  });
  defineGlobal("clearTimeout", (id) => cancelled.add(id));
  defineGlobal("clearInterval", (id) => cancelled.add(id));

  // ---------------------------------------------------------------- Headers, URL, encoders
  const getHeaders = lazy("Headers", () => class Headers {
    constructor(init) {
      this._m = new OrigMap();
      if (init instanceof Headers) init.forEach((v, k) => this.append(k, v));
      else if (Array.isArray(init)) for (const [k, v] of init) this.append(k, v);
      else if (init && typeof init === "object") for (const k of Object.keys(init)) this.append(k, init[k]);
    }
    append(k, v) {
      k = String(k).toLowerCase();
      const old = this._m.get(k);
      this._m.set(k, old === undefined ? String(v) : `${old}, ${v}`);
    }
    set(k, v) { this._m.set(String(k).toLowerCase(), String(v)); }
    get(k) { const v = this._m.get(String(k).toLowerCase()); return v === undefined ? null : v; }
    has(k) { return this._m.has(String(k).toLowerCase()); }
    delete(k) { this._m.delete(String(k).toLowerCase()); }
    forEach(fn) { for (const [k, v] of this._m) fn(v, k, this); }
    entries() { return this._m.entries(); }
    keys() { return this._m.keys(); }
    values() { return this._m.values(); }
    [Symbol.iterator]() { return this._m.entries(); }
    toJSON() { const o = {}; for (const [k, v] of this._m) o[k] = v; return o; }
  });
  const getURLSearchParams = lazy("URLSearchParams", () => class URLSearchParams {
    constructor(init) {
      this._l = [];
      if (typeof init === "string") {
        for (const part of init.replace(/^\?/, "").split("&")) {
          if (!part) continue;
          const i = part.indexOf("=");
          const dec = (s) => decodeURIComponent(s.replace(/\+/g, " "));
          this._l.push(i < 0 ? [dec(part), ""] : [dec(part.slice(0, i)), dec(part.slice(i + 1))]);
        }
      } else if (Array.isArray(init)) for (const [k, v] of init) this._l.push([String(k), String(v)]);
      else if (init && typeof init === "object") for (const k of Object.keys(init)) this._l.push([k, String(init[k])]);
    }
    append(k, v) { this._l.push([String(k), String(v)]); }
    get(k) { const e = this._l.find((e) => e[0] === k); return e ? e[1] : null; }
    getAll(k) { return this._l.filter((e) => e[0] === k).map((e) => e[1]); }
    has(k) { return this._l.some((e) => e[0] === k); }
    set(k, v) { this.delete(k); this.append(k, v); }
    delete(k) { this._l = this._l.filter((e) => e[0] !== k); }
    forEach(fn) { for (const [k, v] of this._l) fn(v, k, this); }
    entries() { return this._l.map((e) => [e[0], e[1]])[Symbol.iterator](); }
    [Symbol.iterator]() { return this.entries(); }
    toString() {
      const e = (s) => encodeURIComponent(s).replace(/%20/g, "+");
      return this._l.map(([k, v]) => `${e(k)}=${e(v)}`).join("&");
    }
  });
  const URL_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*:)\/\/(?:([^:@\/?#]*)(?::([^@\/?#]*))?@)?([^:\/?#]*)(?::(\d+))?([^?#]*)(\?[^#]*)?(#.*)?$/;
  const getURL = lazy("URL", () => class URL {
    constructor(url, base) {
      url = String(url);
      let m = URL_RE.exec(url);
      if (!m && base !== undefined) {
        const b = new URL(base);
        if (url.startsWith("/")) url = `${b.protocol}//${b.host}${url}`;
        else if (url.startsWith("?")) url = `${b.protocol}//${b.host}${b.pathname}${url}`;
        else url = `${b.protocol}//${b.host}${b.pathname.replace(/[^\/]*$/, "")}${url}`;
        m = URL_RE.exec(url);
      }
      if (!m) throw new TypeError(`Invalid URL: ${url}`);
      this.protocol = m[1].toLowerCase();
      this.username = m[2] || "";
      this.password = m[3] || "";
      this.hostname = m[4].toLowerCase();
      this.port = m[5] || "";
      this.pathname = m[6] || "/";
      this.searchParams = new (getURLSearchParams())(m[7] || "");
      this.hash = m[8] || "";
    }
    get host() { return this.port ? `${this.hostname}:${this.port}` : this.hostname; }
    get origin() { return `${this.protocol}//${this.host}`; }
    get search() { const s = this.searchParams.toString(); return s ? `?${s}` : ""; }
    get href() {
      const auth = this.username ? `${this.username}${this.password ? `:${this.password}` : ""}@` : "";
      return `${this.protocol}//${auth}${this.host}${this.pathname}${this.search}${this.hash}`;
    }
    toString() { return this.href; }
    toJSON() { return this.href; }
  });
  const getTextEncoder = lazy("TextEncoder", () => class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(s) {
      s = String(s === undefined ? "" : s);
      const out = [];
      for (const ch of s) {
        let c = ch.codePointAt(0);
        if (c < 0x80) out.push(c);
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      }
      return new Uint8Array(out);
    }
  });
  const getTextDecoder = lazy("TextDecoder", () => class TextDecoder {
    get encoding() { return "utf-8"; }
    decode(buf) {
      if (buf === undefined) return "";
      const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf.buffer || buf);
      let s = "";
      for (let i = 0; i < b.length; ) {
        const c = b[i++];
        let cp;
        if (c < 0x80) cp = c;
        else if (c < 0xe0) cp = ((c & 31) << 6) | (b[i++] & 63);
        else if (c < 0xf0) cp = ((c & 15) << 12) | ((b[i++] & 63) << 6) | (b[i++] & 63);
        else cp = ((c & 7) << 18) | ((b[i++] & 63) << 12) | ((b[i++] & 63) << 6) | (b[i++] & 63);
        s += String.fromCodePoint(cp);
      }
      return s;
    }
  });
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function btoa(s) {
    s = String(s);
    let out = "";
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) throw new TypeError("btoa: string contains characters outside Latin1");
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < s.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < s.length ? B64[n & 63] : "=");
    }
    return out;
  }
  function atob(s) {
    s = String(s).replace(/[\s=]/g, "");
    let out = "";
    for (let i = 0; i < s.length; i += 4) {
      const q = [0, 1, 2, 3].map((j) => (i + j < s.length ? B64.indexOf(s[i + j]) : -1));
      if (q[0] < 0 || q[1] < 0) throw new TypeError("atob: invalid base64");
      const n = (q[0] << 18) | (q[1] << 12) | ((q[2] < 0 ? 0 : q[2]) << 6) | (q[3] < 0 ? 0 : q[3]);
      out += String.fromCharCode(n >> 16);
      if (q[2] >= 0) out += String.fromCharCode((n >> 8) & 255);
      if (q[3] >= 0) out += String.fromCharCode(n & 255);
    }
    return out;
  }
  function structuredCloneImpl(v, seen = new OrigMap()) {
    if (v === null || typeof v !== "object") {
      if (typeof v === "function" || typeof v === "symbol") throw new TypeError(`structuredClone: ${typeof v} cannot be cloned`);
      return v;
    }
    if (seen.has(v)) return seen.get(v);
    let out;
    if (v instanceof OrigDate) out = new OrigDate(v.getTime());
    else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
    else if (v instanceof OrigMap) { out = new OrigMap(); seen.set(v, out); for (const [k, x] of v) out.set(structuredCloneImpl(k, seen), structuredCloneImpl(x, seen)); return out; }
    else if (v instanceof Set) { out = new Set(); seen.set(v, out); for (const x of v) out.add(structuredCloneImpl(x, seen)); return out; }
    else if (ArrayBuffer.isView(v)) out = v.slice();
    else if (Array.isArray(v)) { out = []; seen.set(v, out); v.forEach((x, i) => (out[i] = structuredCloneImpl(x, seen))); return out; }
    else { out = {}; seen.set(v, out); for (const k of Object.keys(v)) out[k] = structuredCloneImpl(v[k], seen); return out; }
    seen.set(v, out);
    return out;
  }
  const maybe = (name, value) => { if (typeof G[name] === "undefined") defineGlobal(name, value); };
  maybe("btoa", btoa);
  maybe("atob", atob);
  maybe("structuredClone", (v) => structuredCloneImpl(v));
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
  const getAbortSignal = lazy("AbortSignal", () => class AbortSignal {
    constructor(key) {
      if (key !== SIGNAL_KEY) throw new TypeError("AbortSignal: use new AbortController().signal or ctx.signal");
      this._aborted = false;
      this._reason = undefined;
      this._listeners = [];
      this.onabort = null;
    }
    get aborted() { return this._aborted; }
    get reason() { return this._reason; }
    throwIfAborted() { if (this._aborted) throw this._reason; }
    addEventListener(type, fn, opts) {
      if (type !== "abort" || fn === null || fn === undefined) return;
      if (this._listeners.some((l) => l.fn === fn)) return;
      this._listeners.push({ fn, once: !!(opts && typeof opts === "object" && opts.once) });
    }
    removeEventListener(type, fn) {
      if (type === "abort") this._listeners = this._listeners.filter((l) => l.fn !== fn);
    }
    static abort(reason) {
      const s = new AbortSignal(SIGNAL_KEY);
      fireAbort(s, reason === undefined ? abortError("This operation was aborted") : reason);
      return s;
    }
  });
  lazy("AbortController", () => class AbortController {
    constructor() { this.signal = new (getAbortSignal())(SIGNAL_KEY); }
    abort(reason) { fireAbort(this.signal, reason === undefined ? abortError("This operation was aborted") : reason); }
  });
  let runSignal;
  function ctxSignal() {
    if (runSignal === undefined) {
      runSignal = new (getAbortSignal())(SIGNAL_KEY);
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
    if (!(s instanceof getAbortSignal())) throw new TypeError("fetch: options.signal must be an AbortSignal (ctx.signal or an AbortController's signal)");
    return s;
  }

  // ---------------------------------------------------------------- fetch
  const getRequest = lazy("Request", () => class Request {
    constructor(input, init) {
      if (input instanceof Request) {
        this.url = input.url;
        init = Object.assign({}, input._init, init || {});
      } else this.url = typeof input === "object" && input !== null && input instanceof getURL() ? input.href : input;
      this._init = init || {};
      this.method = String(this._init.method || "GET").toUpperCase();
      this.headers = new (getHeaders())(this._init.headers);
      this.body = this._init.body === undefined ? null : this._init.body;
    }
  });
  function fetchRequest(input, init) {
    let url = input;
    if (typeof input === "object" && input !== null) {
      if (input instanceof getRequest()) {
        url = input.url;
        init = Object.assign({}, input._init, init || {});
      } else if (input instanceof getURL() || typeof input.href === "string") url = input.href;
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
  function bodyOf(r) {
    const data = r.data;
    if (typeof data !== "string") return data === undefined ? null : data;
    const ct = headerOf(r.headers, "content-type");
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
  const getResponse = lazy("Response", () => class Response {
    constructor(r) {
      r = r || {};
      this.status = typeof r.status === "number" ? r.status : 200;
      this.statusText = r.statusText === undefined ? "" : String(r.statusText);
      this.ok = isOk(this.status);
      this.headers = new (getHeaders())(r.headers || {});
      this.url = r.url === undefined ? "" : String(r.url);
      this.redirected = false;
      this.type = "basic";
      this.bodyUsed = false;
      this._r = r;
    }
    _take() {
      if (this.bodyUsed) throw new TypeError("Response body already used");
      this.bodyUsed = true;
      return this._r.data;
    }
    async json() {
      const d = this._take();
      return typeof d === "string" ? jsonParse(d) : d === undefined ? null : d;
    }
    async text() {
      const d = this._take();
      return typeof d === "string" ? d : d === undefined || d === null ? "" : jsonStringify(d);
    }
    async arrayBuffer() {
      const t = await this.text();
      return new (getTextEncoder())().encode(t).buffer;
    }
    clone() {
      return new Response(this._r);
    }
  });
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
    const p = callAsync("fetch", req).then((r) => new (getResponse())(Object.assign({ url: req.url }, r)));
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
  defineGlobal("ctx", ctx);
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
    return pickEntry(ns)(input, ctx);
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
