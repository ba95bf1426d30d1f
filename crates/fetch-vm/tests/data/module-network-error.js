// input: null
// expect: {"name": "FetchError", "message": "connection refused", "after": 200}
export default async function () {
  let name, message;
  try { await fetch("https://x.test/fail"); } catch (e) { name = e.name; message = e.message; }
  const after = (await fetch("https://x.test/ok")).status;
  return { name, message, after };
}
