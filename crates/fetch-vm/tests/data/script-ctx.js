// input: null
// expect: {"event": {"name": "approved", "timeoutMs": 1000}, "t": 1700000003000, "tool": {"name": "a.b", "service": "a", "method": "b", "args": [1]}}
console.log("hello from a script");
ctx.sleep(1500);
const ev = ctx.waitForEvent("approved", { timeout: "1s" });
const t = Date.now();
const tool = __callHostTool__("a", "b", [1]);
({ event: ev.echo, t, tool: tool.echo })
