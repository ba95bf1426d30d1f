// fetch-vm JavaScript glue for pure evaluations (`Evaluator`), shared by every engine backend.
// A script whose value is a function: the backend calls it once per realm, before the module,
// with one native, `refuse(kind, shown)`, which records that the code tried a host call and
// returns the message to throw. Every way the code could reach the host (network, clock,
// randomness, timers, the task `ctx`) throws an error naming the call; `console` is ignored.
// The helper returned runs the module's entry with the input's JSON and turns the result into
// JSON, with the built-ins captured here (the code cannot break them by replacing globals).
(function (refuse) {
  "use strict";
  const G = globalThis;
  const OrigDate = Date, OrigError = Error, OrigTypeError = TypeError;
  const jsonParse = JSON.parse, jsonStringify = JSON.stringify;
  const defineGlobal = (name, value) =>
    Object.defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  const deny = (kind, shown) =>
    function () {
      const e = new OrigError(refuse(kind, shown));
      e.name = "HostCallRefused";
      throw e;
    };

  // the clock: Date.now(), new Date() and Date() read it; new Date(x), Date.parse, Date.UTC do not
  const dateNow = deny("now", "Date.now()");
  function PureDate(...args) {
    if (!new.target) return deny("now", "Date()")();
    if (args.length === 0) return deny("now", "new Date()")();
    return new OrigDate(...args);
  }
  PureDate.prototype = OrigDate.prototype;
  PureDate.now = dateNow;
  PureDate.parse = OrigDate.parse;
  PureDate.UTC = OrigDate.UTC;
  Object.defineProperty(OrigDate.prototype, "constructor", { value: PureDate, writable: true, configurable: true });
  defineGlobal("Date", PureDate);
  defineGlobal("performance", Object.freeze({ now: deny("now", "performance.now()"), timeOrigin: 0 }));
  // randomness
  Math.random = deny("random", "Math.random()");
  defineGlobal("crypto", Object.freeze({
    randomUUID: deny("random", "crypto.randomUUID()"),
    getRandomValues: deny("random", "crypto.getRandomValues()"),
  }));
  // GC timing would make results depend on the engine's mood
  delete G.WeakRef;
  delete G.FinalizationRegistry;
  // the network, timers and the task API
  defineGlobal("fetch", deny("fetch", "fetch()"));
  defineGlobal("setTimeout", deny("sleep", "setTimeout()"));
  defineGlobal("setInterval", deny("sleep", "setInterval()"));
  defineGlobal("clearTimeout", () => {});
  defineGlobal("clearInterval", () => {});
  defineGlobal("ctx", Object.freeze({
    sleep: deny("sleep", "ctx.sleep()"),
    waitForEvent: deny("waitForEvent", "ctx.waitForEvent()"),
    emit: deny("emit", "ctx.emit()"),
    now: deny("now", "ctx.now()"),
    random: deny("random", "ctx.random()"),
  }));
  const ignore = () => {};
  defineGlobal("console", Object.freeze({ log: ignore, info: ignore, warn: ignore, error: ignore, debug: ignore }));

  // Calls `entry` with the input; the backend drives the job queue until the promise settles.
  function call(entry, inputJson) {
    return entry(jsonParse(inputJson));
  }
  // [true, json] or [false, what is not JSON]; `undefined` is null.
  function toJson(v) {
    try {
      const s = jsonStringify(v, function (k, x) {
        const t = typeof x;
        const where = k === "" ? "the result" : `key ${jsonStringify(k)}`;
        if (t === "function") throw new OrigTypeError(`${where} is a function`);
        if (t === "bigint") throw new OrigTypeError(`${where} is a BigInt (${x}n)`);
        if (t === "symbol") throw new OrigTypeError(`${where} is a symbol`);
        return x;
      });
      return [true, s === undefined ? "null" : s];
    } catch (e) {
      const msg = e && e.message ? String(e.message) : String(e);
      return [false, /circular/i.test(msg) ? `it contains a cycle (${msg})` : msg];
    }
  }
  return { call, toJson };
})
