// input: null
// expect: {"caught": ["FetchError", 503, "Teapot", {"error": "nope"}], "network": "FetchError: connection refused", "finally": 2, "rethrown": "HTTP 404 Teapot for https://x.test/status/404"}
let caught, network, rethrown;
let finallyCount = 0;
try {
  fetch("https://x.test/status/503");
} catch (e) {
  caught = [e.name, e.status, e.statusText, e.data];
} finally {
  finallyCount++;
}
try { fetch("https://x.test/fail"); } catch (e) { network = `${e.name}: ${e.message}`; } finally { finallyCount++; }
function wrapped() {
  try { return fetch("https://x.test/status/404"); } catch (e) { throw new Error(e.message); }
}
try { wrapped(); } catch (e) { rethrown = e.message; }
({ caught, network, finally: finallyCount, rethrown })
