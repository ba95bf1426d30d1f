// approval: file a request, then wait (durably, up to a day) for someone to approve it.
// Inputs: item (string), amount (number)
//
// Module mode: the default export gets the input and ctx. ctx.waitForEvent() suspends the run
// in storage -- no process needs to stay alive -- until the event arrives:
//   sequential-ecosystem signal <run> approved '{"by": "ann"}'
//   sequential-ecosystem resume <run>
// If nobody answers within the timeout, waitForEvent returns null.
export default async function (input, ctx) {
  const { item, amount } = input;
  // A data: URL stands in for the ticketing API, so the example runs offline.
  const filed = await fetch(
    "data:application/json," + encodeURIComponent(JSON.stringify({ ticket: `APR-${amount}`, item }))
  );
  const { ticket } = await filed.json();
  console.log(`ticket ${ticket} filed for ${item} (${amount}); waiting for "approved"`);

  const decision = await ctx.waitForEvent("approved", { timeout: "1d" });
  if (decision === null) {
    return { ticket, item, approved: false, reason: "no answer within a day" };
  }
  return { ticket, item, approved: decision.approved !== false, by: decision.by ?? "unknown" };
}
