// fetch-vm JavaScript glue, part two: the web classes and helpers of the prelude that few runs
// use (Headers, URL, encoders, AbortSignal, Request, Response, structuredClone).
// An ES module whose default export receives what it needs of the prelude and returns a maker
// per class (the prelude builds each class on first use) and the helpers. The backend loads
// and calls it the first time the prelude needs it (the `extras` native), in the run's context:
// a run that uses none of these does not pay for reading their code.
export default function (core) {
  "use strict";
  const { OrigMap, OrigDate, jsonParse, jsonStringify, isOk } = core;
  // the abort helpers live with the run's own signal (rare.js): asked for only by the two
  // classes that use them, so Headers or URL alone do not load it
  const abortHelpers = () => core.rare();
  const { made } = core;
  const URL_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*:)\/\/(?:([^:@\/?#]*)(?::([^@\/?#]*))?@)?([^:\/?#]*)(?::(\d+))?([^?#]*)(\?[^#]*)?(#.*)?$/;

  function structuredClone(v, seen = new OrigMap()) {
    if (v === null || typeof v !== "object") {
      if (typeof v === "function" || typeof v === "symbol") throw new TypeError(`structuredClone: ${typeof v} cannot be cloned`);
      return v;
    }
    if (seen.has(v)) return seen.get(v);
    let out;
    if (v instanceof OrigDate) out = new OrigDate(v.getTime());
    else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
    else if (v instanceof OrigMap) { out = new OrigMap(); seen.set(v, out); for (const [k, x] of v) out.set(structuredClone(k, seen), structuredClone(x, seen)); return out; }
    else if (v instanceof Set) { out = new Set(); seen.set(v, out); for (const x of v) out.add(structuredClone(x, seen)); return out; }
    else if (ArrayBuffer.isView(v)) out = v.slice();
    else if (Array.isArray(v)) { out = []; seen.set(v, out); v.forEach((x, i) => (out[i] = structuredClone(x, seen))); return out; }
    else { out = {}; seen.set(v, out); for (const k of Object.keys(v)) out[k] = structuredClone(v[k], seen); return out; }
    seen.set(v, out);
    return out;
  }
  return {
    Headers: () => class Headers {
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
    },
    URLSearchParams: () => class URLSearchParams {
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
    },
    URL: () => class URL {
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
        this.searchParams = new (made("URLSearchParams"))(m[7] || "");
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
    },
    TextEncoder: () => class TextEncoder {
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
    },
    TextDecoder: () => class TextDecoder {
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
    },
    AbortSignal: () => { const { SIGNAL_KEY, fireAbort, abortError } = abortHelpers(); return class AbortSignal {
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
    }; },
    AbortController: () => { const { SIGNAL_KEY, fireAbort, abortError } = abortHelpers(); return class AbortController {
      constructor() { this.signal = new (made("AbortSignal"))(SIGNAL_KEY); }
      abort(reason) { fireAbort(this.signal, reason === undefined ? abortError("This operation was aborted") : reason); }
    }; },
    Request: () => class Request {
      constructor(input, init) {
        if (input instanceof Request) {
          this.url = input.url;
          init = Object.assign({}, input._init, init || {});
        } else this.url = typeof input === "object" && input !== null && input instanceof made("URL") ? input.href : input;
        this._init = init || {};
        this.method = String(this._init.method || "GET").toUpperCase();
        this.headers = new (made("Headers"))(this._init.headers);
        this.body = this._init.body === undefined ? null : this._init.body;
      }
    },
    Response: () => class Response {
      constructor(r) {
        r = r || {};
        this.status = typeof r.status === "number" ? r.status : 200;
        this.statusText = r.statusText === undefined ? "" : String(r.statusText);
        this.ok = isOk(this.status);
        this.headers = new (made("Headers"))(r.headers || {});
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
        return new (made("TextEncoder"))().encode(t).buffer;
      }
      clone() {
        return new Response(this._r);
      }
    },
    structuredClone: (v) => structuredClone(v),
  };
}
