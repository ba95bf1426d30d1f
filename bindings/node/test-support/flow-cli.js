'use strict';
// One SequentialFlow call in a process of its own: node flow-cli.js STORE_URL execute|resume|get JSON
// prints the resulting task as JSON (or {"error": {code, message}}).
const { SequentialFlow } = require('..');

const [store, call, arg] = process.argv.slice(2);
SequentialFlow.setDefaultStorage(store);
const run = { execute: (a) => SequentialFlow.execute(a), resume: (a) => SequentialFlow.resume(a), get: (a) => SequentialFlow.getTask(a.id) }[call];
run(JSON.parse(arg)).then(
  (task) => console.log(JSON.stringify(task)),
  (e) => console.log(JSON.stringify({ error: { code: e.code, message: e.message } }))
);
