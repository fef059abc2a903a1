import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { promisify } from "node:util"
import { suite } from "../bench/suite.js"

const results = new URL("../bench/RESULTS.md", import.meta.url)
const read = (url: URL) => {
  try {
    return readFileSync(url, "utf8")
  } catch {
    return undefined
  }
}

describe("the benchmarks (npm run bench -- --quick)", () => {
  it("run every benchmark briefly, print every row and write no results", { timeout: 120_000 }, async () => {
    const before = read(results)
    const { stdout } = await promisify(execFile)("npm", ["run", "--silent", "bench", "--", "--quick"], {
      maxBuffer: 16 * 1024 * 1024
    })
    for (const benchmark of suite) {
      // without a Redis (never under CI=true, where the run fails instead) the Redis benchmarks say they skipped
      if (benchmark.needsRedis && stdout.includes(`(${benchmark.id}: skipped, no Redis answers`)) {
        expect(process.env["CI"]).not.toBe("true")
        continue
      }
      for (const row of benchmark.rows) expect(stdout).toContain(`| ${row} |`)
    }
    expect(stdout).toContain("## Targets")
    const cells = stdout.split("\n").filter((line) => line.startsWith("| "))
    expect(cells.join("\n")).not.toMatch(/NaN|Infinity|undefined/)
    expect(read(results)).toBe(before)
  })
})
