import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Logger, LogLevel } from "effect"
import { QueueManager } from "../src/index.js"

interface Line {
  readonly level: string
  readonly message: unknown
  readonly annotations: Record<string, unknown>
}

/** Runs `self` with a fresh manager, collecting every log line at debug level and above. */
const collectLogs = <A, E>(self: Effect.Effect<A, E, QueueManager.QueueManager>) => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    lines.push({
      level: logLevel.label,
      message: Array.isArray(message) && message.length === 1 ? message[0] : message,
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  return self.pipe(
    Effect.provide(QueueManager.layer({ maxUserQueue: 1 })),
    Effect.provide(Logger.add(logger)),
    Logger.withMinimumLogLevel(LogLevel.Debug),
    Effect.as(lines)
  )
}

describe("logs", () => {
  it.effect("a debug line when the manager is built, then debug lines with the user id and counts", () =>
    Effect.gen(function* () {
      const lines = yield* collectLogs(
        Effect.gen(function* () {
          const q = yield* QueueManager.QueueManager
          yield* q.tryAcquire(-42)
          yield* q.tryAcquire(-42)
          yield* q.release(-42)
          yield* q.release(-42)
        })
      )
      expect(lines).toEqual([
        {
          level: "DEBUG",
          message: "QueueManager ready",
          annotations: { maxUserQueue: 1, maxTotal: 0, maxWaitingPerUser: 100, tiers: false }
        },
        {
          level: "DEBUG",
          message: "slot acquired",
          annotations: { userId: -42, active: 1, limit: 1, bypass: false }
        },
        {
          level: "DEBUG",
          message: "slot refused",
          annotations: { userId: -42, reason: "user", active: 1, limit: 1, bypass: false }
        },
        { level: "DEBUG", message: "slot released", annotations: { userId: -42, active: 0 } },
        { level: "DEBUG", message: "release ignored: no slot held", annotations: { userId: -42 } }
      ])
    })
  )

  it.effect("the annotations stay on the log lines, not on the caller's later logs", () =>
    Effect.gen(function* () {
      const lines = yield* collectLogs(
        Effect.gen(function* () {
          const q = yield* QueueManager.QueueManager
          yield* q.withSlot("u", { bypassUserLimit: true })(Effect.logDebug("inside"))
          yield* Effect.logDebug("after")
        })
      )
      const mine = lines.filter((line) => line.message === "inside" || line.message === "after")
      expect(mine.map((line) => line.annotations)).toEqual([{}, {}])
    })
  )
})
