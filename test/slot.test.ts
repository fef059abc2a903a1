import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, FiberRef, Logger, LogLevel, Option } from "effect"
import { QueueManager } from "../src/index.js"
import { holdOne, withManager } from "./support.js"

type Guard = (
  q: QueueManager.Service,
  userId: QueueManager.UserId,
  options?: QueueManager.SlotOptions
) => <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | QueueManager.SlotError | QueueManager.LeaseLost, R>

/** The two public ways of running a body inside a slot. */
const guards: ReadonlyArray<[string, Guard]> = [
  ["slot", (q, userId, options) => (body) => Effect.scoped(Effect.zipRight(q.slot(userId, options), body))],
  ["withSlot", (q, userId, options) => q.withSlot(userId, options)]
]

const provide = (maxUserQueue: number) => withManager({ maxUserQueue })

describe.each(guards)("%s", (_name, guard) => {
  const exits: ReadonlyArray<[string, Effect.Effect<unknown, string>]> = [
    ["success", Effect.succeed(1)],
    ["typed failure", Effect.fail("boom")],
    ["defect", Effect.die("kaboom")]
  ]

  it.scoped.each(exits)("releases exactly once on %s", ([_, body]) =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      yield* holdOne(q, 1)
      const after = yield* guard(
        q,
        1
      )(Effect.zipRight(q.activeCount(1), body)).pipe(Effect.exit, Effect.zipRight(q.activeCount(1)))
      // 1 = released once; 0 would mean the other fiber's slot was freed too; 2 = leaked.
      expect(after).toBe(1)
    }).pipe(provide(3))
  )

  it.scoped("what the body sets in a FiberRef stays set after it", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      const ref = yield* FiberRef.make("before")
      yield* guard(q, 1)(FiberRef.set(ref, "set by the body"))
      expect(yield* FiberRef.get(ref)).toBe("set by the body")
    }).pipe(provide(3))
  )

  it.scoped("a logger that throws on 'slot acquired' stops the body from running and the slot is released", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      let ran = false
      const throwing = Logger.make(({ message }) => {
        if (String(message).includes("slot acquired")) throw new Error("logger down")
      })
      const exit = yield* guard(
        q,
        1
      )(Effect.sync(() => (ran = true))).pipe(
        Effect.exit,
        Logger.withMinimumLogLevel(LogLevel.Debug),
        Effect.provide(Logger.replace(Logger.defaultLogger, throwing))
      )
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(ran).toBe(false)
      expect(yield* q.activeCount(1)).toBe(0)
    }).pipe(provide(3))
  )

  it.scoped("releases exactly once when the holder is interrupted", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      yield* holdOne(q, 1)
      const entered = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(guard(q, 1)(Effect.zipRight(Deferred.succeed(entered, undefined), Effect.never)))
      yield* Deferred.await(entered)
      expect(yield* q.activeCount(1)).toBe(2)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* q.activeCount(1)).toBe(1)
    }).pipe(provide(3))
  )

  it.scoped("a refused caller gets QueueFull, never runs its body and frees nobody's slot", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      yield* holdOne(q, -100)
      let ran = false
      const error = yield* guard(q, -100)(Effect.sync(() => (ran = true))).pipe(Effect.flip)
      expect(error).toEqual(new QueueManager.QueueFull({ userId: -100, reason: "user", active: 1, limit: 1 }))
      expect(error.message).toBe("user -100 already holds 1 of 1 slots")
      expect(ran).toBe(false)
      expect(yield* q.activeCount(-100)).toBe(1)
    }).pipe(provide(1))
  )

  it.scoped("bypass gets a slot past the limit and gives it back", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      yield* holdOne(q, 1)
      const inside = yield* guard(q, 1, { bypassUserLimit: true })(q.activeCount(1))
      expect(inside).toBe(2)
      expect(yield* q.activeCount(1)).toBe(1)
    }).pipe(provide(1))
  )

  it.effect("1,000 concurrent callers for one user, limit 3: 3 hold a slot, 997 are refused without waiting", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      const open = yield* Deferred.make<void>()
      const allRefused = yield* Deferred.make<void>()
      let refused = 0
      const onRefused = Effect.suspend(() =>
        ++refused === 997 ? Deferred.succeed(allRefused, undefined) : Effect.void
      )
      const callers = yield* Effect.forEach(
        Array.from({ length: 1000 }),
        () => Effect.fork(guard(q, 7)(Deferred.await(open)).pipe(Effect.tapError(() => onRefused))),
        { concurrency: "unbounded" }
      )
      // The gate is still closed: if a refused caller waited for a slot, this would never complete.
      yield* Deferred.await(allRefused)
      expect(yield* q.activeCount(7)).toBe(3)
      yield* Deferred.succeed(open, undefined)
      const exits = yield* Effect.forEach(callers, Fiber.await)
      expect(exits.filter(Exit.isSuccess).length).toBe(3)
      expect(yield* q.activeCount(7)).toBe(0)
    }).pipe(provide(3))
  )
})

describe("slot", () => {
  it.effect("is held until the caller's scope closes, not when the acquiring effect ends", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      const inScope = yield* Effect.scoped(
        Effect.gen(function* () {
          yield* q.slot(1)
          yield* q.slot(1)
          return yield* q.activeCount(1)
        })
      )
      expect(inScope).toBe(2)
      expect(yield* q.activeCount(1)).toBe(0)
    }).pipe(provide(3))
  )

  it.effect("an interrupt that hits before the body leaves no slot behind", () =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      const fiber = yield* Effect.fork(q.withSlot(1)(Effect.never))
      yield* Fiber.interrupt(fiber)
      expect(yield* q.activeCount(1)).toBe(0)
    }).pipe(provide(3))
  )
})

describe("invalid user ids", () => {
  const invalid: ReadonlyArray<[string, unknown]> = [
    ["NaN", Number.NaN],
    ["1.5", 1.5],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["9007199254740992", 2 ** 53],
    ['""', ""],
    ['"a\\ud83d"', "a\uD83D"]
  ]

  it.effect.each(invalid)("%s dies naming the value and changes no count", ([shown, userId]) =>
    Effect.gen(function* () {
      const q = yield* QueueManager.QueueManager
      yield* q.tryAcquire(1)
      const id = userId as QueueManager.UserId
      const calls: ReadonlyArray<Effect.Effect<unknown, unknown>> = [
        q.tryAcquire(id),
        q.tryAcquire(id, { bypassUserLimit: true }),
        q.release(id),
        q.activeCount(id),
        Effect.scoped(q.slot(id)),
        q.withSlot(id)(Effect.void)
      ]
      for (const call of calls) {
        const exit = yield* Effect.exit(call)
        const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
        expect(Option.isSome(defect) && Cause.isIllegalArgumentException(defect.value)).toBe(true)
        expect(String(Option.getOrUndefined(defect))).toContain(`invalid userId ${shown}`)
      }
      expect(yield* q.activeUsers).toBe(1)
      expect(yield* q.activeCount(1)).toBe(1)
    }).pipe(provide(3))
  )
})
