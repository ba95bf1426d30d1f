// input: {"ids": ["1", "2"]}
// expect: {"loop": ["Alice", "Bob"], "cond": "hello", "cls": "Alice", "caught": 404, "finally": true, "parallel": 2, "nested": "Bob"}
class Api {
  constructor(base) { this.base = base; }
  async user(id) { return (await fetch(`${this.base}/users/${id}`)).json(); }
}
export default async function (input, ctx) {
  const api = new Api("https://x.test");
  const loop = [];
  for (const id of input.ids) loop.push((await api.user(id)).name);
  let i = 0;
  do { await fetch(`https://x.test/do/${i}`); } while (++i < 2);
  const cond = loop[0] === "Alice" ? await (await fetch("https://x.test/text")).text() : "no";
  let caught, fin = false;
  try {
    const r = await fetch("https://x.test/status/404");
    if (!r.ok) throw Object.assign(new Error("bad"), { status: r.status });
  } catch (e) { caught = e.status; } finally { fin = true; }
  const parallel = (await Promise.all(input.ids.map(async (id) => (await api.user(id)).id))).length;
  const nested = await (async () => { const inner = async () => (await api.user("2")).name; return inner(); })();
  return { loop, cond, cls: (await api.user("1")).name, caught, finally: fin, parallel, nested };
}
