import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { formatReport, limitsHeld, simulate } from "../examples/simulation.js"
import { QueueManager } from "../src/index.js"

const options = {
  privateChats: 8,
  groups: 4,
  burstsPerChat: 3,
  maxBurst: 6,
  maxDownloadMillis: 400,
  inlineShare: 0.2
}

describe("the bot simulation (npm start)", () => {
  it.effect("keeps every user within the limit, refuses with the seed's reply and ends with nothing held", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.fork(simulate(options).pipe(Effect.provide(QueueManager.layer({ maxUserQueue: 2 }))))
      yield* TestClock.adjust(10_000)
      const report = yield* Fiber.join(fiber)
      expect(limitsHeld(report)).toBe(true)
      expect(report.refused).toBeGreaterThan(0)
      expect(report.sampleReply).toMatch(
        /^Please wait! You already have \d+ videos processing\. Try again in a moment\.$/
      )
      expect(Math.max(...Array.from(report.peaks.values(), (p) => p.normal))).toBe(2)
      expect(report.peaks.size).toBe(12)
      expect(formatReport(report)).toContain("OK: no user ever went above the limit")
    })
  )

  it("limitsHeld notices a user above the limit", () => {
    const report = {
      limit: 3,
      accepted: 4,
      inline: 0,
      refused: 0,
      sampleReply: undefined,
      peaks: new Map([[1, { normal: 4, all: 4 }]]),
      activeUsersAfter: 0,
      slotsHeldAfter: 0
    }
    expect(limitsHeld(report)).toBe(false)
    expect(formatReport(report)).toContain("FAILED")
  })

  it("npm start honours MAX_USER_QUEUE_SIZE", async () => {
    const { stdout } = await promisify(execFile)("npx", ["tsx", "examples/bot-simulation.ts"], {
      env: { ...process.env, MAX_USER_QUEUE_SIZE: " 2 " }
    })
    // the report is the first thing printed: no log line before it
    expect(stdout.startsWith("limit per user: 2\n")).toBe(true)
    expect(stdout).toMatch(/highest concurrency of one user: 2 normal \(limit 2\)/)
    expect(stdout).toContain("OK: no user ever went above the limit, and every count returned to zero")
  })

  it("npm start refuses an invalid MAX_USER_QUEUE_SIZE", async () => {
    const run = promisify(execFile)("npx", ["tsx", "examples/bot-simulation.ts"], {
      env: { ...process.env, MAX_USER_QUEUE_SIZE: "abc" }
    })
    // the error in words, naming the variable and the value: no FiberFailure wrapper, no stack
    await expect(run).rejects.toMatchObject({
      code: 1,
      stderr: 'bad configuration:\nMAX_USER_QUEUE_SIZE must be a whole number >= 0 (0 = no limit), got "abc"\n'
    })
  })
})
