// order-graph: tasks/order-flow as an explicit state graph (graph.json, docs/graphs.md).
// Inputs: customerId (number), items (array of {sku, qty, price})
//
// Each task state calls the export of the same name as handler(input, ctx): input is the
// previous state's output (or what the state's `input` template builds), ctx has run, state,
// attempt, results (outputs of completed states), vars, index (map items), branch (parallel
// branches). What a handler returns is the state's output; what it throws goes to the state's
// retry and catch. Every fetch() is a durable step of its state. data: URLs stand in for the
// shop's APIs, so the example runs offline.

const api = (body) => "data:application/json," + encodeURIComponent(JSON.stringify(body));

export async function lookup(input) {
  const res = await fetch(api({ id: input.customerId, name: "Alice", tier: "gold" }));
  return await res.json();
}

// A map item: one cart line (ctx.index is its position in the cart).
export async function priceLine(line, ctx) {
  const res = await fetch(api({ sku: line.sku, unit: line.price }));
  const { unit } = await res.json();
  return { sku: line.sku, qty: line.qty, amount: Math.round(unit * line.qty * 100) / 100, line: ctx.index };
}

export async function total(lines) {
  const sum = lines.reduce((s, l) => s + l.amount, 0);
  return { total: Math.round(sum * 100) / 100, lines: lines.length };
}

class OutOfStock extends Error {}

// Parallel branch 0. A thrown OutOfStock (the class name is the error's name) is caught by the
// parallel state and leads to `rejected`.
export async function stock(order, ctx) {
  const lines = ctx.vars.lines;
  const levels = Object.fromEntries(lines.map((l) => [l.sku, l.sku === "unobtainium" ? 0 : 100]));
  const res = await fetch(api(levels));
  const inStock = await res.json();
  const missing = lines.filter((l) => inStock[l.sku] < l.qty).map((l) => l.sku);
  if (missing.length) throw new OutOfStock(`not in stock: ${missing.join(", ")}`);
  return { reserved: lines.length };
}

// Parallel branch 1.
export async function fraud(order) {
  const res = await fetch(api({ score: order.total > 1000 ? 0.4 : 0.02 }));
  return await res.json();
}

export async function place(order) {
  const res = await fetch(api({ orderId: `ord-${order.customer.id}-${order.lines.length}` }), {
    method: "POST",
    body: JSON.stringify(order),
  });
  const { orderId } = await res.json();
  return { orderId, customer: order.customer.name, total: order.total };
}

export async function receipt(placed) {
  await fetch(api({ sent: true }), { method: "POST", body: JSON.stringify(placed) });
  console.log(`order ${placed.orderId} placed for ${placed.customer}: ${placed.total}`);
  return { ...placed, receiptSent: true };
}
