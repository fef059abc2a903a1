import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Exit } from "effect"
import { QueueManager } from "../src/index.js"

const limitOf = Effect.map(QueueManager.QueueManager, (q) => q.maxUserQueue)

/** Builds `layerConfig()` with `MAX_USER_QUEUE_SIZE` set to `value` (or unset). */
const fromEnv = (value: string | undefined) =>
  limitOf.pipe(
    Effect.provide(QueueManager.layerConfig()),
    Effect.withConfigProvider(
      ConfigProvider.fromMap(new Map(value === undefined ? [] : [["MAX_USER_QUEUE_SIZE", value]]))
    ),
    Effect.exit
  )

describe("layer options", () => {
  it.effect.each<[string, number]>([
    ["-1", -1],
    ["1.5", 1.5],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY]
  ])("maxUserQueue = %s fails naming the option and the value", ([shown, maxUserQueue]) =>
    Effect.gen(function* () {
      const error = yield* limitOf.pipe(Effect.provide(QueueManager.layer({ maxUserQueue })), Effect.flip)
      expect(error._op).toBe("InvalidData")
      expect(String(error)).toContain(`maxUserQueue must be a whole number >= 0 (0 = no limit), got ${shown}`)
    })
  )

  it.effect("make builds the same service as layer", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.make({ maxUserQueue: 2 })
      expect(q.maxUserQueue).toBe(2)
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* q.activeCount(1)).toBe(1)
    })
  )
})

describe("layerConfig and MAX_USER_QUEUE_SIZE", () => {
  it.effect.each<[string | undefined, number]>([
    [undefined, 3],
    ["", 3],
    ["   ", 3],
    ["5", 5],
    [" 5 ", 5],
    ["0", 0]
  ])("%j gives a limit of %i", ([value, expected]) =>
    Effect.gen(function* () {
      const exit = yield* fromEnv(value)
      expect(exit).toStrictEqual(Exit.succeed(expected))
    })
  )

  it.effect.each(["abc", "-1", "3.5", "1e3", "99999999999999999999"])(
    "%j is a ConfigError naming the variable and the value",
    (value) =>
      Effect.gen(function* () {
        const exit = yield* fromEnv(value)
        expect(Exit.isFailure(exit)).toBe(true)
        const message = String(Exit.isFailure(exit) ? exit.cause : "")
        expect(message).toContain("MAX_USER_QUEUE_SIZE")
        expect(message).toContain(JSON.stringify(value))
      })
  )

  it.effect("takes any Config for its options, still validated", () =>
    Effect.gen(function* () {
      const provider = ConfigProvider.fromMap(new Map([["LIMIT", "-4"]]))
      const exit = yield* limitOf.pipe(
        Effect.provide(QueueManager.layerConfig({ maxUserQueue: Config.integer("LIMIT") })),
        Effect.withConfigProvider(provider),
        Effect.exit
      )
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("got -4")
    })
  )
})
