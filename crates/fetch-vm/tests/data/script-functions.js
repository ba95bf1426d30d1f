// input: {"n": 2}
// expect: {"branch": "small", "arrow": "Alice", "nested": ["a", "b"], "counter": 2, "cls": "Bob!"}
let branch;
if (fetch("https://x.test/users/1").name === "Alice" && input.n < 3) {
  branch = fetch("https://x.test/text") === "hello" ? "small" : "wrong";
} else {
  branch = "big";
}
const getName = (id) => fetch(`https://x.test/users/${id}`).name;
function outer(list) {
  function inner(x) { return fetch(`https://x.test/${x}`).url.split("/").pop(); }
  return list.map(inner);
}
function makeCounter() {
  let calls = 0;
  return () => { fetch("https://x.test/count"); return ++calls; };
}
const counter = makeCounter();
counter();
class Client {
  constructor(base) { this.base = base; }
  user(id) { return fetch(`${this.base}/users/${id}`); }
  shout(id) { return this.user(id).name + "!"; }
}
({ branch, arrow: getName(1), nested: outer(["a", "b"]), counter: counter(), cls: new Client("https://x.test").shout(2) })
