import { describe, expect, it } from "@effect/vitest"
import { FastCheck, HashMap } from "effect"
import { Scheduler, type Waiter } from "../src/internal/scheduler.js"

type Op =
  | { readonly op: "request"; readonly user: number; readonly bypass: boolean; readonly wait: boolean }
  | { readonly op: "release"; readonly pick: number }
  | { readonly op: "leave"; readonly pick: number }
  | { readonly op: "resize"; readonly maxUserQueue: number; readonly maxTotal: number }
  | { readonly op: "shutdown" }

const small = FastCheck.integer({ min: 0, max: 4 })
const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  {
    weight: 120,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("request" as const),
      user: FastCheck.integer({ min: 0, max: 3 }),
      bypass: FastCheck.boolean(),
      wait: FastCheck.boolean()
    })
  },
  { weight: 70, arbitrary: FastCheck.record({ op: FastCheck.constant("release" as const), pick: FastCheck.nat() }) },
  { weight: 20, arbitrary: FastCheck.record({ op: FastCheck.constant("leave" as const), pick: FastCheck.nat() }) },
  {
    weight: 10,
    arbitrary: FastCheck.record({ op: FastCheck.constant("resize" as const), maxUserQueue: small, maxTotal: small })
  },
  { weight: 1, arbitrary: FastCheck.constant({ op: "shutdown" as const }) }
)

/**
 * Drives the scheduler with random operations against a model of who holds and who waits,
 * and returns the first broken rule: a limit exceeded at admission, a refusal without cause,
 * a waiter left waiting although it fits, a user served out of order, a user overtaken
 * twice by the same other user while it waited only for `maxTotal`, or state left behind.
 */
const run = (
  initialDefault: number,
  initialTotal: number,
  maxWaiting: number,
  ops: ReadonlyArray<Op>
): string | undefined => {
  let base = initialDefault
  const tier = (user: number, base: number) => (user === 0 ? base + 1 : base) // user 0 has a tier
  const limitOf = (user: number) => tier(user, base)
  const s = new Scheduler({
    maxUserQueue: initialDefault,
    maxTotal: initialTotal,
    maxWaitingPerUser: maxWaiting,
    limitOf: (user, base) => tier(user as number, base)
  })
  const holders: Array<number> = []
  const pending = new Map<number, Array<Waiter>>()
  const overtaken = new Map<number, Map<number, number>>()
  let problem: string | undefined
  const fail = (message: string) => (problem ??= message)

  const fitsUser = (user: number, bypass: boolean) => bypass || limitOf(user) === 0 || s.count(user) < limitOf(user)
  const fitsTotal = () => s.maxTotal === 0 || s.inFlight < s.maxTotal
  const readyBlocked = (user: number) => {
    const head = pending.get(user)?.[0]
    return head !== undefined && fitsUser(user, head.bypass)
  }
  const checkAdmission = (user: number, bypass: boolean) => {
    if (!bypass && limitOf(user) > 0 && s.count(user) > limitOf(user)) fail(`user ${user} above its limit`)
    if (s.maxTotal > 0 && s.inFlight > s.maxTotal) fail(`${s.inFlight} slots above maxTotal ${s.maxTotal}`)
  }
  const onAdmitted = (waiter: Waiter) => {
    const user = waiter.userId as number
    const line = pending.get(user)!
    if (line[0] !== waiter) fail(`user ${user} served out of order`)
    line.splice(line.indexOf(waiter), 1)
    if (line.length === 0) pending.delete(user)
    holders.push(user)
    checkAdmission(user, waiter.bypass)
    overtaken.delete(user)
    for (const other of pending.keys()) {
      if (other === user || !readyBlocked(other)) continue
      const byUser = overtaken.get(other) ?? new Map<number, number>()
      const times = (byUser.get(user) ?? 0) + 1
      byUser.set(user, times)
      overtaken.set(other, byUser)
      if (times > 1) fail(`user ${other} overtaken twice by user ${user} while waiting for maxTotal`)
    }
  }

  for (const o of ops) {
    switch (o.op) {
      case "request": {
        const before = s.inFlight
        const outcome = s.acquire(o.user, o.bypass, o.wait)
        if (outcome._tag === "Acquired") {
          holders.push(o.user)
          checkAdmission(o.user, o.bypass)
        } else if (outcome._tag === "Waiting") {
          if (!o.wait) fail("a reject-mode request waits")
          const waiter = outcome.ticket as Waiter
          waiter.wake = (admitted: boolean) => (admitted ? onAdmitted(waiter) : undefined)
          pending.set(o.user, [...(pending.get(o.user) ?? []), waiter])
        } else if (outcome._tag === "Refused") {
          if (s.inFlight !== before) fail("a refusal changed the count")
          const justified =
            outcome.reason === "user"
              ? !fitsUser(o.user, o.bypass)
              : outcome.reason === "global"
                ? !fitsTotal()
                : maxWaiting > 0 && (pending.get(o.user)?.length ?? 0) >= maxWaiting
          if (!justified) fail(`refused (${outcome.reason}) without cause`)
        } else if (!s.isShutdown) fail("refused as shut down before shutdown")
        break
      }
      case "release": {
        if (holders.length === 0) break
        const [user] = holders.splice(o.pick % holders.length, 1)
        if (s.release(user!) === undefined) fail(`release of a held slot of ${user} ignored`)
        break
      }
      case "leave": {
        const all = Array.from(pending.values()).flat()
        if (all.length === 0) break
        const waiter = all[o.pick % all.length]!
        const line = pending.get(waiter.userId as number)!
        line.splice(line.indexOf(waiter), 1)
        if (line.length === 0) pending.delete(waiter.userId as number)
        s.leave(waiter)
        break
      }
      case "resize": {
        base = o.maxUserQueue
        s.resize({ maxUserQueue: o.maxUserQueue, maxTotal: o.maxTotal })
        break
      }
      case "shutdown": {
        s.shutdown()
        pending.clear()
      }
    }
    for (const user of pending.keys()) {
      if (!readyBlocked(user)) overtaken.delete(user)
      if (readyBlocked(user) && fitsTotal()) fail(`user ${user} left waiting although a slot fits`)
    }
    if (s.waiting !== Array.from(pending.values()).flat().length) fail("waiting count differs from the model")
    if (problem !== undefined) return problem
  }
  // every waiter is eventually admitted: release everything, including what the releases admit
  while (holders.length > 0) s.release(holders.pop()!)
  if (pending.size > 0) return `${pending.size} users still waiting at the end`
  if (HashMap.size(s.counts) !== 0 || s.inFlight !== 0 || s.waiting !== 0 || s.waitingUsers !== 0)
    return "state left behind"
  return problem
}

describe("Scheduler (the in-memory state machine)", () => {
  it("keeps every limit, serves each user in order, is fair across users under maxTotal and ends empty", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 0, max: 3 }),
        FastCheck.integer({ min: 0, max: 4 }),
        FastCheck.integer({ min: 0, max: 3 }),
        FastCheck.array(op, { maxLength: 120 }),
        (base, total, maxWaiting, ops) => {
          expect(run(base, total, maxWaiting, ops)).toBeUndefined()
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("one user with 1,000 waiters delays a user with one waiter by at most one turn", () => {
    const s = new Scheduler({ maxUserQueue: 0, maxTotal: 1, maxWaitingPerUser: 0, limitOf: (_, base) => base })
    s.acquire("blocker", false, false)
    const admitted: Array<string> = []
    const enqueue = (user: string) => {
      const outcome = s.acquire(user, false, true)
      if (outcome._tag !== "Waiting") throw new Error(`expected ${user} to wait`)
      ;(outcome.ticket as Waiter).wake = () => admitted.push(user)
    }
    for (let i = 0; i < 1000; i++) enqueue("heavy")
    enqueue("light")
    s.release("blocker")
    s.release("heavy")
    expect(admitted).toEqual(["heavy", "light"])
  })
})
