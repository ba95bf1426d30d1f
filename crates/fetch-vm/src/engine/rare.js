// fetch-vm JavaScript glue, part three: what the prelude needs only for some runs — crypto,
// console, timers and durations, the run's abort signal, `ctx`, module mode's `fetch` and
// entry point, and the script-mode object-tail check. A script-mode run that only fetches never
// loads it: reading its bytecode into every run's context cost about as much as the rest of
// the prelude.
// An ES module whose default export receives what it needs of the prelude and returns the
// makers and helpers; the prelude loads and calls it on first use (the `rare` native), in the
// run's context.
export default function (core) {
  "use strict";
  const { OrigError, OrigPromise, OrigFunction, jsonStringify, nativeLog, nativeDuration, made } = core;
  const { callSync, callAsync, call, isScript, input, taskName, toError, fetchRequest, signalOf, withHeaders } = core;

  // ---------------------------------------------------------------- crypto
  const { randomBytes } = core;
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

  // ---------------------------------------------------------------- module mode's fetch
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
        return isScript() ? undefined : r.then(() => undefined);
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
        return isScript() ? core.now() : OrigPromise.resolve(core.now());
      },
      random() {
        return isScript() ? core.random() : OrigPromise.resolve(core.random());
      },
    });
    return { ctx };
  }

  // ---------------------------------------------------------------- helpers for the backend
  function pickEntry(ns) {
    if (typeof ns.default === "function") return ns.default;
    const name = taskName();
    if (name) {
      const words = String(name).split(/[^A-Za-z0-9]+/).filter(Boolean);
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
    return pickEntry(ns)(input(), made("ctx"));
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
  return {
    makeCrypto, makeConsole, makeTimers, SIGNAL_KEY, abortError, fireAbort, asyncFetch, makeCtx,
    runModule, isObjectTail,
  };
}
