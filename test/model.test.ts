import { describe, expect, it } from "@effect/vitest"
import { FastCheck, HashMap, HashSet } from "effect"
import * as Model from "../src/internal/model.js"
import * as Queue from "../src/internal/queue.js"

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
 * Drives the scheduling model with random operations against a record of who holds and who
 * waits, and returns the first broken rule: a limit exceeded at admission, a refusal without
 * cause, a request that passed its user's line, a waiter left waiting although it fits, a user
 * served out of order, a user overtaken twice by the same other user while it waited only for
 * `maxTotal`, or state left behind.
 */
const run = (
  initialDefault: number,
  initialTotal: number,
  maxWaitingPerUser: number,
  tierWaiting: number,
  ops: ReadonlyArray<Op>
): string | undefined => {
  let base = initialDefault
  // user 0 has a tier: one slot more than the default, and a waiting bound of its own
  const tier = (user: number, base: number) => (user === 0 ? base + 1 : base)
  const limitOf = (user: number) => tier(user, base)
  const maxWaitingOf = (user: number) => (user === 0 ? tierWaiting : maxWaitingPerUser)
  let s = Model.empty({ maxUserQueue: initialDefault, maxTotal: initialTotal })
  /** Applies `event`, tells every request it admitted, and returns what it did. */
  const apply = (event: Model.Event) => {
    const transition = Model.step(s, event)
    s = transition.state
    for (const [waiter, granted] of transition.admitted) onAdmitted(waiter, granted.active)
    return transition
  }
  const holders: Array<number> = []
  const pending = new Map<number, Array<Model.Waiter>>()
  const overtaken = new Map<number, Map<number, number>>()
  let problem: string | undefined
  const fail = (message: string) => (problem ??= message)

  const count = (user: number) => Model.countOf(s, user)
  const fitsUser = (user: number, bypass: boolean) => bypass || limitOf(user) === 0 || count(user) < limitOf(user)
  const fitsTotal = () => s.limits.maxTotal === 0 || s.inFlight < s.limits.maxTotal
  const readyBlocked = (user: number) => {
    const head = pending.get(user)?.[0]
    return head !== undefined && fitsUser(user, head.bypass)
  }
  /** A slot was granted to `user`, whose count it made `active`. */
  const checkAdmission = (user: number, bypass: boolean, active: number) => {
    if (!bypass && limitOf(user) > 0 && active > limitOf(user)) fail(`user ${user} above its limit`)
    if (s.limits.maxTotal > 0 && s.inFlight > s.limits.maxTotal) {
      fail(`${s.inFlight} slots above maxTotal ${s.limits.maxTotal}`)
    }
  }
  function onAdmitted(waiter: Model.Waiter, active: number) {
    const user = waiter.userId as number
    const line = pending.get(user)!
    if (line[0] !== waiter) fail(`user ${user} served out of order`)
    line.splice(line.indexOf(waiter), 1)
    if (line.length === 0) pending.delete(user)
    holders.push(user)
    checkAdmission(user, waiter.bypass, active)
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
        const outcome = apply({
          _tag: "Acquire",
          userId: o.user,
          limit: limitOf(o.user),
          maxWaiting: maxWaitingOf(o.user),
          bypass: o.bypass,
          wait: o.wait
        }).decision!
        if (outcome._tag === "Acquired") {
          if (o.wait && pending.has(o.user)) fail(`a request of user ${o.user} passed its user's line`)
          holders.push(o.user)
          checkAdmission(o.user, o.bypass, outcome.grant.active)
        } else if (outcome._tag === "Waiting") {
          if (!o.wait) fail("a reject-mode request waits")
          const queued = pending.get(o.user)?.length ?? 0
          if (maxWaitingOf(o.user) > 0 && queued >= maxWaitingOf(o.user)) {
            fail(`user ${o.user} waits with ${queued} already waiting, past its bound ${maxWaitingOf(o.user)}`)
          }
          pending.set(o.user, [...(pending.get(o.user) ?? []), outcome.waiter])
        } else if (outcome._tag === "Refused") {
          if (s.inFlight !== before) fail("a refusal changed the count")
          const justified =
            outcome.reason === "user"
              ? !fitsUser(o.user, o.bypass)
              : outcome.reason === "global"
                ? !fitsTotal()
                : maxWaitingOf(o.user) > 0 && (pending.get(o.user)?.length ?? 0) >= maxWaitingOf(o.user)
          if (!justified) fail(`refused (${outcome.reason}) without cause`)
        } else if (!s.shutdown) fail("refused as shut down before shutdown")
        break
      }
      case "release": {
        if (holders.length === 0) break
        const [user] = holders.splice(o.pick % holders.length, 1)
        if (apply({ _tag: "Release", userId: user! }).left === undefined)
          fail(`release of a held slot of ${user} ignored`)
        break
      }
      case "leave": {
        const all = Array.from(pending.values()).flat()
        if (all.length === 0) break
        const waiter = all[o.pick % all.length]!
        const line = pending.get(waiter.userId as number)!
        line.splice(line.indexOf(waiter), 1)
        if (line.length === 0) pending.delete(waiter.userId as number)
        apply({ _tag: "Leave", waiter })
        break
      }
      case "resize": {
        base = o.maxUserQueue
        apply({
          _tag: "Resize",
          limits: { maxUserQueue: o.maxUserQueue, maxTotal: o.maxTotal },
          lineLimit: (user) => tier(user as number, o.maxUserQueue)
        })
        break
      }
      case "shutdown": {
        apply({ _tag: "Shutdown" })
        pending.clear()
      }
    }
    for (const user of pending.keys()) {
      if (!readyBlocked(user)) overtaken.delete(user)
      if (readyBlocked(user) && fitsTotal()) fail(`user ${user} left waiting although a slot fits`)
    }
    if (s.waiting !== Array.from(pending.values()).flat().length) fail("waiting count differs from the model")
    // the model's own bookkeeping: the ring's counts, and no request that left is remembered once its line ended
    const inRing = Array.from(HashMap.values(s.lines)).filter((line) => line.turn !== 0).length
    if (s.ringSize !== inRing) fail(`ringSize ${s.ringSize}, but ${inRing} lines take a turn`)
    if (s.turnEntries !== Queue.toArray(s.turns).length) fail("turnEntries differs from the turns queued")
    if (s.turnEntries > 2 * s.ringSize + 33) fail(`${s.turnEntries} turns queued for ${s.ringSize} users`)
    if (problem !== undefined) return problem
  }
  // every waiter is eventually admitted: release everything, including what the releases admit
  while (holders.length > 0) apply({ _tag: "Release", userId: holders.pop()! })
  if (pending.size > 0) return `${pending.size} users still waiting at the end`
  if (
    HashMap.size(s.counts) !== 0 ||
    s.inFlight !== 0 ||
    s.waiting !== 0 ||
    HashMap.size(s.lines) !== 0 ||
    HashSet.size(s.gone) !== 0 ||
    s.ringSize !== 0
  )
    return "state left behind"
  return problem
}

describe("the scheduling model", () => {
  it("keeps every limit and waiting bound, serves each user in order, is fair across users under maxTotal and ends empty", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 0, max: 3 }),
        FastCheck.integer({ min: 0, max: 4 }),
        FastCheck.integer({ min: 0, max: 3 }),
        FastCheck.integer({ min: 0, max: 3 }),
        FastCheck.array(op, { maxLength: 120 }),
        (base, total, maxWaiting, tierWaiting, ops) => {
          expect(run(base, total, maxWaiting, tierWaiting, ops)).toBeUndefined()
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("one user with 1,000 waiters delays a user with one waiter by at most one turn", () => {
    let s = Model.empty({ maxUserQueue: 0, maxTotal: 1 })
    const admitted: Array<string> = []
    const apply = (event: Model.Event) => {
      const transition = Model.step(s, event)
      s = transition.state
      for (const [waiter] of transition.admitted) admitted.push(waiter.userId as string)
      return transition
    }
    apply({ _tag: "Acquire", userId: "blocker", limit: 0, maxWaiting: 0, bypass: false, wait: false })
    const enqueue = (user: string) => {
      const outcome = apply({
        _tag: "Acquire",
        userId: user,
        limit: 0,
        maxWaiting: 0,
        bypass: false,
        wait: true
      }).decision!
      if (outcome._tag !== "Waiting") throw new Error(`expected ${user} to wait`)
    }
    for (let i = 0; i < 1000; i++) enqueue("heavy")
    enqueue("light")
    apply({ _tag: "Release", userId: "blocker" })
    apply({ _tag: "Release", userId: "heavy" })
    expect(admitted).toEqual(["heavy", "light"])
  })
})
