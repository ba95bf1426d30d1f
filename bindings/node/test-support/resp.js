'use strict';
// A minimal Redis client (RESP2 over TCP) with node-redis's set/get/del shapes: enough to run
// RedisStorage against the real server without installing the redis package.
const net = require('node:net');

function encode(args) {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
}

// One reply from the front of `buf`: [value, rest] or null when incomplete.
function parse(buf) {
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[0]);
  const line = buf.subarray(1, eol).toString();
  const rest = buf.subarray(eol + 2);
  if (kind === '+') return [line, rest];
  if (kind === '-') return [new Error(`redis: ${line}`), rest];
  if (kind === ':') return [Number(line), rest];
  if (kind === '$') {
    const n = Number(line);
    if (n < 0) return [null, rest];
    if (rest.length < n + 2) return null;
    return [rest.subarray(0, n).toString(), rest.subarray(n + 2)];
  }
  throw new Error(`redis: unexpected reply type ${kind}`);
}

async function connect(port = 6379, host = '127.0.0.1') {
  const socket = net.connect(port, host);
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const waiting = [];
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (let r = parse(buf); r; r = parse(buf)) {
      buf = r[1];
      const { resolve, reject } = waiting.shift();
      r[0] instanceof Error ? reject(r[0]) : resolve(r[0]);
    }
  });
  socket.on('error', (e) => waiting.splice(0).forEach(({ reject }) => reject(e)));
  const send = (...args) =>
    new Promise((resolve, reject) => {
      waiting.push({ resolve, reject });
      socket.write(encode(args));
    });
  return {
    send,
    set: (key, value, options) => (options && options.PX ? send('SET', key, value, 'PX', options.PX) : send('SET', key, value)),
    get: (key) => send('GET', key),
    del: (key) => send('DEL', key),
    quit: () => socket.end(),
  };
}

module.exports = { connect };
