/**
 * The benchmark runner, started by `bench/run.ts` (compiled, under `node --expose-gc`).
 * Arguments: `--quick` (small sizes), `--only id,id` (some benchmarks), `--write path`
 * (write the results there as markdown).
 */
import { writeFileSync } from "node:fs"
import { format, resolveConfig } from "prettier"
import { renderResults, renderSection, renderTargets, runStart, type Section } from "./report.js"
import { redisReachable, redisUrl } from "./redisPeers.js"
import { suite } from "./suite.js"

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const at = args.indexOf(name)
  return at === -1 ? undefined : args[at + 1]
}
const quick = args.includes("--quick")
const only = option("--only")?.split(",")
const write = option("--write")

const start = runStart()
const sections: Array<Section> = []
const redis = await redisReachable()
for (const benchmark of suite) {
  if (only !== undefined && !only.includes(benchmark.id)) continue
  if (benchmark.needsRedis && !redis) {
    if (process.env["CI"] === "true") throw new Error(`benchmark ${benchmark.id}: no Redis answers at ${redisUrl}`)
    console.log(`(${benchmark.id}: skipped, no Redis answers at ${redisUrl}; start one or set REDIS_URL)\n`)
    continue
  }
  const started = performance.now()
  const section = await benchmark.run(quick)
  const missing = benchmark.rows.filter((row) => !section.rows.some((cells) => cells[0] === row))
  if (missing.length > 0) throw new Error(`benchmark ${benchmark.id} printed no row ${missing.join(", ")}`)
  sections.push(section)
  console.log(
    `${renderSection(section)}\n\n(${benchmark.id}: ${((performance.now() - started) / 1000).toFixed(1)} s)\n`
  )
}
console.log(`## Targets${quick ? " (quick run: sizes too small to judge)" : ""}\n\n${renderTargets(sections)}`)
if (write !== undefined) {
  const options = (await resolveConfig(write)) ?? {}
  writeFileSync(write, await format(renderResults(sections, start), { ...options, filepath: write }))
  console.log(`\nwritten to ${write}`)
}
