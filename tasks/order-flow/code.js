// order-flow: look up the customer, price the cart, place the order, then send a receipt.
// Inputs: customerId (number), items (array of {sku, qty, price})
//
// Script mode (the seed's style): fetch() returns the response body synchronously and the
// last expression is the result. Every fetch() is a durable step: its response is journaled,
// so a resumed run replays it instead of fetching again.
//
// The "services" are data: URLs that echo what a real API would answer, so the example runs
// offline; replace `service(...)` with your API's URLs, e.g. https://api.example.com/customers/7.
const service = (answer) =>
  "data:application/json," + encodeURIComponent(JSON.stringify(answer));

// 1. the customer
const customer = fetch(service({ id: input.customerId, name: "Alice", tier: "gold" }));

// 2. a quote for the cart, for that customer (depends on step 1)
const subtotal = input.items.reduce((sum, item) => sum + item.qty * item.price, 0);
const discount = customer.tier === "gold" ? 0.1 : 0;
const quote = fetch(service({
  customer: customer.id,
  lines: input.items.length,
  subtotal,
  total: Math.round(subtotal * (1 - discount) * 100) / 100,
}));

// 3. the order, at the quoted total (depends on steps 1 and 2)
const order = fetch(service({ orderId: `ord-${customer.id}-${quote.lines}`, total: quote.total, status: "placed" }), {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ customer: customer.id, items: input.items, total: quote.total }),
});

// 4. the receipt, for that order (depends on step 3)
const receipt = fetch(service({ sent: true, to: `${customer.name.toLowerCase()}@example.com`, order: order.orderId }));

console.log(`order ${order.orderId} placed for ${customer.name}: ${order.total}`);

({ orderId: order.orderId, customer: customer.name, total: order.total, receiptSent: receipt.sent })
