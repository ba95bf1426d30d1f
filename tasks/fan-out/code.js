// fan-out: fetch every warehouse's stock at once (Promise.all), then add it up.
// Inputs: sku (string), warehouses (array of names)
//
// Module mode. The fetches awaited together are performed concurrently, and each response is
// journaled, so a resumed run replays them all instead of fetching again.
export default async function (input, ctx) {
  const { sku, warehouses } = input;
  // data: URLs stand in for each warehouse's stock API, so the example runs offline.
  const stockUrl = (w, i) =>
    "data:application/json," + encodeURIComponent(JSON.stringify({ warehouse: w, sku, units: (i + 1) * 10 }));
  const responses = await Promise.all(warehouses.map((w, i) => fetch(stockUrl(w, i))));
  const stock = await Promise.all(responses.map((r) => r.json()));
  const total = stock.reduce((sum, s) => sum + s.units, 0);
  console.log(`${sku}: ${total} units in ${stock.length} warehouses`);
  return { sku, total, byWarehouse: Object.fromEntries(stock.map((s) => [s.warehouse, s.units])) };
}
