import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { QueueManager } from "../src/index.js"
import { defectOf, enqueue, hold, withManager } from "./support.js"

const Queue = QueueManager.QueueManager
const groupsGetTen: QueueManager.UserLimit = (userId, maxUserQueue) =>
  typeof userId === "number" && userId < 0 ? 10 : maxUserQueue

describe("tiers", () => {
  it.effect("a per-user limit function, with maxUserQueue as the default", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      expect(yield* q.limitFor(-100123)).toBe(10)
      expect(yield* q.limitFor(42)).toBe(3)
      const group = yield* Effect.replicateEffect(q.tryAcquire(-100123), 11)
      const chat = yield* Effect.replicateEffect(q.tryAcquire(42), 4)
      expect(group.filter((ok) => ok).length).toBe(10)
      expect(chat.filter((ok) => ok).length).toBe(3)
    }).pipe(withManager({ maxUserQueue: 3, userLimit: groupsGetTen }))
  )

  it.effect("a refusal names the user's own limit", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* Effect.replicateEffect(q.tryAcquire(-5), 10)
      const error = yield* Effect.scoped(q.slot(-5)).pipe(Effect.flip)
      expect(error).toMatchObject({ reason: "user", active: 10, limit: 10 })
    }).pipe(withManager({ maxUserQueue: 3, userLimit: groupsGetTen }))
  )

  it.effect.each([1.5, -1, Number.NaN])("a tier of %s is a defect naming the value and changes nothing", (bad) =>
    Effect.gen(function* () {
      const q = yield* Queue
      const exit = yield* Effect.exit(q.tryAcquire("odd"))
      expect(String(defectOf(exit))).toContain(`userLimit("odd") returned ${bad}`)
      expect(Exit.isFailure(yield* Effect.exit(q.limitFor("odd")))).toBe(true)
      expect(yield* q.stats).toMatchObject({ inFlight: 0, activeUsers: 0, acquired: 0 })
      expect(yield* q.tryAcquire("even")).toBe(true)
    }).pipe(withManager({ maxUserQueue: 3, userLimit: (userId, base) => (userId === "odd" ? bad : base) }))
  )

  it.effect("userLimit must be a function", () =>
    Effect.gen(function* () {
      const error = yield* QueueManager.make({ maxUserQueue: 3, userLimit: 10 as never }).pipe(Effect.flip)
      expect(String(error)).toContain(
        "userLimit must be a function (userId, maxUserQueue) => number | { running, waiting }, got number"
      )
    })
  )
})

describe("resize", () => {
  it.scoped("lowering never revokes held slots; new requests wait until below the new limit", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const releases = [yield* hold(q, 1), yield* hold(q, 1), yield* hold(q, 1)]
      yield* q.resize({ maxUserQueue: 1 })
      expect(q.maxUserQueue).toBe(1)
      expect(yield* q.activeCount(1)).toBe(3)
      expect(yield* q.tryAcquire(1)).toBe(false)
      yield* releases[0]!
      yield* releases[1]!
      expect(yield* q.tryAcquire(1)).toBe(false)
      yield* releases[2]!
      expect(yield* q.tryAcquire(1)).toBe(true)
    }).pipe(withManager({ maxUserQueue: 3 }))
  )

  it.scoped("raising the per-user default admits waiters at once, tiers following the default", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      const order: Array<string> = []
      const waiters = [
        yield* enqueue(q, 1, order, "a"),
        yield* enqueue(q, 1, order, "b"),
        yield* enqueue(q, 1, order, "c")
      ]
      yield* q.resize({ maxUserQueue: 3 })
      // admitted inside resize: two of three waiters hold a slot before their fibers even run
      expect(yield* q.stats).toMatchObject({ inFlight: 3, waiting: 1 })
      expect(yield* q.limitFor(1)).toBe(3)
      yield* Effect.forEach(waiters, Fiber.join)
      expect(order).toEqual(["a", "b", "c"])
    }).pipe(withManager({ maxUserQueue: 1, userLimit: (_userId, base) => base }))
  )

  it.scoped("raising maxTotal admits waiters at once; lowering it keeps held slots", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      const order: Array<string> = []
      const waiter = yield* enqueue(q, 2, order, "user 2")
      yield* q.resize({ maxTotal: 2 })
      yield* Fiber.join(waiter)
      expect(order).toEqual(["user 2"])
      yield* hold(q, 3)
      yield* q.resize({ maxTotal: 1 })
      expect(yield* q.stats).toMatchObject({ inFlight: 2, maxTotal: 1 })
      expect(yield* q.tryAcquire(4)).toBe(false)
    }).pipe(withManager({ maxUserQueue: 1, maxTotal: 1 }))
  )

  it.effect.each<[string, Partial<QueueManager.Limits>]>([
    ["maxUserQueue", { maxUserQueue: -1 }],
    ["maxTotal", { maxTotal: 2.5 }],
    ["maxTotal", { maxUserQueue: 5, maxTotal: Number.NaN }]
  ])("an invalid %s is a ConfigError naming it and changes nothing", ([name, limits]) =>
    Effect.gen(function* () {
      const q = yield* Queue
      const error = yield* q.resize(limits).pipe(Effect.flip)
      expect(String(error)).toContain(`${name} must be a whole number >= 0`)
      expect(q.maxUserQueue).toBe(3)
      expect(yield* q.stats).toMatchObject({ maxUserQueue: 3, maxTotal: 4 })
    }).pipe(withManager({ maxUserQueue: 3, maxTotal: 4 }))
  )
})
