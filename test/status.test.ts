import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { QueueManager } from "../src/index.js"
import { defectOf, enqueue, hold, withManager } from "./support.js"

const Queue = QueueManager.QueueManager

/** The author's model: one request running per chat; 3 queued + running in a private chat, 10 in a group. */
const perChat: QueueManager.UserLimit = (chatId) =>
  typeof chatId === "number" && chatId < 0 ? { running: 1, waiting: 9 } : { running: 1, waiting: 2 }

describe("tiered waiting bounds", () => {
  it.scoped("a tier sets how many may run and how many may wait, per user", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const order: Array<string> = []
      yield* hold(q, 7)
      yield* enqueue(q, 7, order, "private 1")
      yield* enqueue(q, 7, order, "private 2")
      const privateRefused = yield* q.withSlot(7, { onFull: "wait" })(Effect.void).pipe(Effect.flip)
      expect(privateRefused).toMatchObject({ _tag: "QueueFull", reason: "waiting", active: 2, limit: 2 })

      yield* hold(q, -7)
      for (let i = 0; i < 9; i++) yield* enqueue(q, -7, order, `group ${i}`)
      const groupRefused = yield* q.withSlot(-7, { onFull: "wait" })(Effect.void).pipe(Effect.flip)
      expect(groupRefused).toMatchObject({ _tag: "QueueFull", reason: "waiting", active: 9, limit: 9 })
      expect(yield* q.stats).toMatchObject({ inFlight: 2, waiting: 11, refused: { waiting: 2 } })
      // the running limit is the tier's too: one per chat, refused at once in reject mode
      expect(yield* q.limitFor(-7)).toBe(1)
      expect(yield* q.tryAcquire(-7)).toBe(false)
    }).pipe(withManager({ maxUserQueue: 3, maxWaitingPerUser: 100, userLimit: perChat }))
  )

  it.scoped("a tier that sets one limit keeps the default of the other", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      expect(yield* q.status("waits")).toEqual({ active: 0, waiting: 0, limit: 2, maxWaiting: 5 })
      expect(yield* q.status("runs")).toEqual({ active: 0, waiting: 0, limit: 4, maxWaiting: 1 })
      expect(yield* q.status("plain")).toEqual({ active: 0, waiting: 0, limit: 2, maxWaiting: 1 })
      // the tier follows the default it is given
      yield* q.resize({ maxUserQueue: 6 })
      expect(yield* q.status("waits")).toMatchObject({ limit: 6, maxWaiting: 5 })
    }).pipe(
      withManager({
        maxUserQueue: 2,
        maxWaitingPerUser: 1,
        userLimit: (userId) => (userId === "waits" ? { waiting: 5 } : userId === "runs" ? { running: 4 } : 2)
      })
    )
  )

  it.effect.each<[unknown, string]>([
    [{ running: -1 }, "{ running: -1 }: running must be a whole number >= 0"],
    [{ running: 1, waiting: 1.5 }, "{ running: 1, waiting: 1.5 }: waiting must be a whole number >= 0"],
    [{ waiting: "3" }, '{ waiting: "3" }: waiting must be a whole number >= 0'],
    [{ running: Number.NaN }, "{ running: NaN }: running must be a whole number >= 0"],
    // a misspelt field would silently drop the limit it meant
    [{ runing: 1 }, "{ runing: 1 }: must be a whole number >= 0 (0 = no limit) or { running, waiting }"],
    [[1], "[1]: must be a whole number >= 0 (0 = no limit) or { running, waiting }"],
    [null, "null: must be a whole number >= 0 (0 = no limit) or { running, waiting }"]
  ])("a tier of %o is a defect naming the user and the value, and changes nothing", ([bad, message]) =>
    Effect.gen(function* () {
      const q = yield* Queue
      const exit = yield* Effect.exit(q.withSlot("odd", { onFull: "wait" })(Effect.void))
      expect(String(defectOf(exit))).toContain(`userLimit("odd") returned ${message}`)
      expect(Exit.isFailure(yield* Effect.exit(q.status("odd")))).toBe(true)
      expect(yield* q.stats).toMatchObject({ inFlight: 0, waiting: 0, acquired: 0 })
      expect(yield* q.tryAcquire("even")).toBe(true)
    }).pipe(withManager({ maxUserQueue: 3, userLimit: (userId, base) => (userId === "odd" ? (bad as never) : base) }))
  )
})

describe("status", () => {
  it.scoped("counts a user's running and queued requests, with its limits", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const order: Array<string> = []
      yield* hold(q, 1)
      yield* enqueue(q, 1, order, "a")
      yield* enqueue(q, 1, order, "b")
      expect(yield* q.status(1)).toEqual({ active: 1, waiting: 2, limit: 1, maxWaiting: 2 })
      expect(yield* q.status(-1)).toEqual({ active: 0, waiting: 0, limit: 1, maxWaiting: 9 })
      // reading a user never seen creates nothing
      expect(yield* q.stats).toMatchObject({ activeUsers: 1, waitingUsers: 1 })
    }).pipe(withManager({ maxUserQueue: 3, userLimit: perChat }))
  )

  it.effect("rejects an invalid user id, naming it", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const exit = yield* Effect.exit(q.status(1.5))
      expect(String(defectOf(exit))).toContain("1.5")
    }).pipe(withManager({ maxUserQueue: 3 }))
  )
})

describe("check: the refusal a request would get, taking nothing", () => {
  it.scoped("none while a slot is free; the user's refusal once it is full", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      expect(yield* q.check(1)).toEqual(Option.none())
      yield* hold(q, 1)
      yield* hold(q, 1)
      const refusal = yield* q.check(1)
      expect(Option.getOrThrow(refusal)).toMatchObject({ _tag: "QueueFull", reason: "user", active: 2, limit: 2 })
      expect(Option.getOrThrow(refusal)).toBeInstanceOf(QueueManager.QueueFull)
      // bypassing the user's limit: only maxTotal could refuse
      expect(yield* q.check(1, { bypassUserLimit: true })).toEqual(Option.none())
      // the same refusal as the acquisition itself
      const actual = yield* q.withSlot(1)(Effect.void).pipe(Effect.flip)
      expect(actual).toEqual(Option.getOrThrow(refusal))
    }).pipe(withManager({ maxUserQueue: 2 }))
  )

  it.scoped("with onFull wait: none while the line has room, the waiting refusal when it is full", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const order: Array<string> = []
      yield* hold(q, 5)
      expect(yield* q.check(5, { onFull: "wait" })).toEqual(Option.none())
      yield* enqueue(q, 5, order, "a")
      yield* enqueue(q, 5, order, "b")
      expect(Option.getOrThrow(yield* q.check(5, { onFull: "wait" }))).toMatchObject({
        reason: "waiting",
        active: 2,
        limit: 2
      })
      // another chat is not affected
      expect(yield* q.check(6, { onFull: "wait" })).toEqual(Option.none())
    }).pipe(withManager({ maxUserQueue: 3, userLimit: perChat }))
  )

  it.scoped("the global refusal at maxTotal, and QueueShutdown after a shutdown", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      yield* hold(q, 2)
      expect(Option.getOrThrow(yield* q.check(3))).toMatchObject({ reason: "global", active: 2, limit: 2 })
      // waiting is allowed: the request would wait for maxTotal
      expect(yield* q.check(3, { onFull: "wait" })).toEqual(Option.none())
      yield* q.shutdown
      expect(Option.getOrThrow(yield* q.check(4))).toEqual(new QueueManager.QueueShutdown({ userId: 4 }))
    }).pipe(withManager({ maxUserQueue: 3, maxTotal: 2 }))
  )

  it.scoped("takes nothing and counts no refusal", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      const before = yield* q.stats
      yield* q.check(1)
      yield* q.check(2)
      yield* q.check(1, { onFull: "wait" })
      expect(yield* q.stats).toEqual(before)
      expect(yield* q.status(2)).toMatchObject({ active: 0, waiting: 0 })
    }).pipe(withManager({ maxUserQueue: 1 }))
  )
})
