// input: {"ids": ["1", "2", "3"]}
// expect: {"names": ["Alice", "Bob", "Bob"], "whileCount": 3, "forOf": 3}
const names = [];
for (let i = 0; i < input.ids.length; i++) {
  names.push(fetch(`https://api.example.com/users/${input.ids[i]}`).name);
}
let whileCount = 0;
while (whileCount < 3) {
  fetch("https://x.test/tick");
  whileCount++;
}
let forOf = 0;
for (const id of input.ids) { if (fetch(`https://x.test/users/${id}`).id === id) forOf++; }
({ names, whileCount, forOf })
