// input: {"user": {"id": "1", "tags": ["x"]}}
// expect: {"name": "Alice", "id": "1", "rest": {"tags": ["x"]}, "all": ["x", "y", "Alice"], "merged": {"a": 1, "name": "Alice"}, "label": "user Alice has 1 tag(s)"}
const { id, ...rest } = input.user;
const { name } = fetch(`https://x.test/users/${id}`);
const [first] = [fetch(`https://x.test/users/${id}`)];
const all = [...rest.tags, "y", first.name];
const merged = { a: 1, ...{ name } };
const label = `user ${fetch(`https://x.test/users/${id}`).name} has ${rest.tags.length} tag(s)`;
({ name, id, rest, all, merged, label })
