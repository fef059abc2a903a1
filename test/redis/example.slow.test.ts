import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { redisUrl } from "../support.js"

describe("npm start with REDIS_URL", () => {
  it("runs the simulation as three processes sharing Redis and the per-user limits hold across them", async () => {
    const { stdout } = await promisify(execFile)("npx", ["tsx", "examples/bot-simulation.ts"], {
      env: { ...process.env, REDIS_URL: redisUrl, MAX_USER_QUEUE_SIZE: "2" }
    })
    expect(stdout).toContain("3 worker processes share the limits")
    expect(stdout).toContain("limit per user: 2")
    expect(stdout).toMatch(/highest concurrency of one user: 2 normal \(limit 2\)/)
    expect(stdout).toContain("after the run: 0 users active, 0 slots held")
    expect(stdout).toContain("OK: no user ever went above the limit")
  }, 60_000)

  it("says in words that Redis cannot be reached, once, and exits with code 1", async () => {
    const run = promisify(execFile)("npx", ["tsx", "examples/bot-simulation.ts"], {
      env: { ...process.env, REDIS_URL: "redis://127.0.0.1:1" }
    })
    await expect(run).rejects.toMatchObject({
      code: 1,
      stderr:
        "a worker process failed: the queue store is unavailable (connect): connection refused " +
        "(connect ECONNREFUSED 127.0.0.1:1): is Redis listening there?\n"
    })
  }, 60_000)
})
