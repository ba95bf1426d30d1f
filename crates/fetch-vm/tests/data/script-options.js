// input: {"items": [1, 2]}
// expect: {"seq": 0, "request": {"url": "https://x.test/echo", "options": {"method": "POST", "headers": {"Content-Type": "application/json", "X-Trace": "t"}, "body": "{\"items\":[1,2]}"}}}
fetch("https://x.test/echo", {
  method: "POST",
  headers: { "Content-Type": "application/json", "X-Trace": "t" },
  body: JSON.stringify({ items: input.items }),
})
