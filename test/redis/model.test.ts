/**
 * The Lua obeys the model: random events go through `Model.step` and through `store.lua` on a
 * real Redis (called directly, as one process would), one at a time, and after every event the
 * decision, the requests admitted and the whole state must agree: each user's count, each line
 * in order, the ring in order, and the limits.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck, HashMap } from "effect"
import { Redis } from "ioredis"
import * as Model from "../../src/internal/model.js"
import * as Queue from "../../src/internal/queue.js"
import { evalScripts, keysOf, type Script } from "../../src/internal/redis/lua.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"

const USERS = [1, 2, 3] as const
/** User 3 has a tier: one more than the default, and a waiting bound of its own. */
const tier = (user: number, base: number) => (user === 3 ? base + 1 : base)
const maxWaitingOf = (user: number) => (user === 3 ? 1 : 3)

type Step =
  | { readonly op: "acquire"; readonly user: number; readonly bypass: boolean; readonly wait: boolean }
  | { readonly op: "release"; readonly pick: number }
  | { readonly op: "leave"; readonly pick: number }
  | { readonly op: "resize"; readonly maxUserQueue: number; readonly maxTotal: number }
  | { readonly op: "expire"; readonly waiters: ReadonlyArray<number>; readonly slots: ReadonlyArray<number> }

const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
  {
    weight: 8,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("acquire" as const),
      user: FastCheck.constantFrom(...USERS),
      bypass: FastCheck.boolean(),
      // mostly waiting: lines and the ring are where the rules are subtle
      wait: FastCheck.integer({ min: 0, max: 3 }).map((n) => n > 0)
    })
  },
  { weight: 5, arbitrary: FastCheck.record({ op: FastCheck.constant("release" as const), pick: FastCheck.nat() }) },
  { weight: 2, arbitrary: FastCheck.record({ op: FastCheck.constant("leave" as const), pick: FastCheck.nat() }) },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("resize" as const),
      maxUserQueue: FastCheck.integer({ min: 0, max: 3 }),
      maxTotal: FastCheck.constantFrom(0, 1, 2, 2, 3)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("expire" as const),
      waiters: FastCheck.array(FastCheck.nat(), { maxLength: 2 }),
      slots: FastCheck.array(FastCheck.nat(), { maxLength: 2 })
    })
  }
)

/** The Lua of one prefix, called directly: each call's answer without the epoch and limits it begins with. */
const lua = (redis: Redis, prefix: string) => {
  const keys = keysOf(prefix)
  let calls = 0
  return async (script: Script, limits: Model.Limits, ...args: ReadonlyArray<string | number>) => {
    const header = [`nonce.${calls++}`, 60_000, "nowhere", limits.maxTotal, limits.maxUserQueue]
    const answer = (await redis.eval(evalScripts[script], keys.length, ...keys, ...header, ...args)) as Array<unknown>
    return answer.slice(3)
  }
}

const encode = (user: number) => `n${user}`

/** Runs `steps` through both and returns the first disagreement, if any. */
const compare = async (redis: Redis, prefix: string, steps: ReadonlyArray<Step>): Promise<string | undefined> => {
  const call = lua(redis, prefix)
  let limits: Model.Limits = { maxUserQueue: 1, maxTotal: 2 }
  let state = Model.empty(limits)
  await call("configure", limits, limits.maxTotal, limits.maxUserQueue)
  /** The model's waiter ids and the Lua's request ids, both ways; the Lua's lease ids per user. */
  const luaIdOf = new Map<number, string>()
  const waiterOf = new Map<string, Model.Waiter>()
  const leases = new Map<number, Array<string>>()
  let serial = 0
  const hold = (user: number, id: string) => leases.set(user, [...(leases.get(user) ?? []), id])
  const waiting = () => Array.from(waiterOf.values())
  const admittedByLua = async (): Promise<Array<string>> => {
    // the Lua records an admitted request as 'a<token>\t<active>' until its lease goes
    const tickets = (await redis.hgetall(`{${prefix}}:tickets`)) as Record<string, string>
    return Object.entries(tickets)
      .filter(([id, info]) => info.startsWith("a") && waiterOf.has(id))
      .map(([id]) => id)
  }
  const settle = async (transition: Model.Transition, what: string) => {
    state = transition.state
    const expected = transition.admitted.map(([waiter]) => luaIdOf.get(waiter.id)!).sort()
    const got = (await admittedByLua()).sort()
    if (JSON.stringify(expected) !== JSON.stringify(got)) {
      return `${what}: the model admitted ${JSON.stringify(expected)}, the Lua ${JSON.stringify(got)}`
    }
    for (const id of got) {
      hold(Number(waiterOf.get(id)!.userId), id)
      waiterOf.delete(id)
    }
    return undefined
  }

  for (const [i, s] of steps.entries()) {
    const what = `step ${i} ${JSON.stringify(s)}`
    let problem: string | undefined
    switch (s.op) {
      case "acquire": {
        const limit = tier(s.user, limits.maxUserQueue)
        const id = `p:${serial++}:${encode(s.user)}`
        const flags = (s.bypass ? 1 : 0) + (s.wait ? 2 : 0)
        const [answer] = (await call(
          "batch",
          limits,
          "a",
          encode(s.user),
          limit,
          flags,
          id,
          limits.maxUserQueue,
          maxWaitingOf(s.user)
        )) as [Array<string | number>]
        const transition = Model.step(state, {
          _tag: "Acquire",
          userId: s.user,
          limit,
          maxWaiting: maxWaitingOf(s.user),
          bypass: s.bypass,
          wait: s.wait
        })
        const decision = transition.decision!
        const luaTag = ["Refused", "Acquired", "Waiting", "Stale"][Number(answer[0])]
        if (decision._tag !== luaTag) return `${what}: the model ${decision._tag}, the Lua ${luaTag}`
        if (decision._tag === "Acquired") hold(s.user, id)
        if (decision._tag === "Refused" && decision.reason !== answer[1]) {
          return `${what}: refused for ${decision.reason} by the model, for ${answer[1]} by the Lua`
        }
        if (decision._tag === "Waiting") {
          luaIdOf.set(decision.waiter.id, id)
          waiterOf.set(id, decision.waiter)
        }
        problem = await settle(transition, what)
        break
      }
      case "release": {
        const holders = USERS.filter((user) => (leases.get(user) ?? []).length > 0)
        if (holders.length === 0) continue
        const user = holders[s.pick % holders.length]!
        const id = leases.get(user)!.pop()!
        const [left] = (await call("batch", limits, "r", id)) as [number]
        const transition = Model.step(state, { _tag: "Release", userId: user })
        if (transition.left !== left) return `${what}: the model left ${transition.left}, the Lua ${left}`
        problem = await settle(transition, what)
        break
      }
      case "leave": {
        const all = waiting()
        if (all.length === 0) continue
        const waiter = all[s.pick % all.length]!
        const id = luaIdOf.get(waiter.id)!
        waiterOf.delete(id)
        await call("leave", limits, id)
        problem = await settle(Model.step(state, { _tag: "Leave", waiter }), what)
        break
      }
      case "resize": {
        limits = { maxUserQueue: s.maxUserQueue, maxTotal: s.maxTotal }
        const next = limits
        const pairs = USERS.flatMap((user) => [encode(user), tier(user, next.maxUserQueue)])
        const [done] = (await call("configure", limits, next.maxTotal, next.maxUserQueue, ...pairs)) as [number]
        if (done !== 1) return `${what}: configure answered ${done}`
        const transition = Model.step(state, {
          _tag: "Resize",
          limits: next,
          lineLimit: (user) => tier(user as number, next.maxUserQueue)
        })
        problem = await settle(transition, what)
        break
      }
      case "expire": {
        // what a dead process leaves: its requests and slots run out (and the next call purges them)
        const all = waiting()
        const gone = [...new Set(s.waiters.filter(() => all.length > 0).map((k) => all[k % all.length]!))]
        const held = USERS.flatMap((user) => (leases.get(user) ?? []).map((id) => [user, id] as const))
        const lapsed = [...new Map(s.slots.filter(() => held.length > 0).map((k) => held[k % held.length]!)).values()]
        for (const waiter of gone) {
          await redis.zadd(`{${prefix}}:texp`, "XX", 1, luaIdOf.get(waiter.id)!)
          waiterOf.delete(luaIdOf.get(waiter.id)!)
        }
        const lapsedUsers: Array<number> = []
        for (const id of lapsed) {
          const user = USERS.find((u) => leases.get(u)?.includes(id))!
          leases.set(
            user,
            leases.get(user)!.filter((other) => other !== id)
          )
          lapsedUsers.push(user)
          await redis.zadd(`{${prefix}}:leases`, "XX", 1, id)
        }
        await call("read", limits, "user", "n0")
        const transition = Model.step(state, { _tag: "Expire", waiters: gone, slots: lapsedUsers })
        problem = await settle(transition, what)
        break
      }
    }
    if (problem !== undefined) return problem
    // the whole state, after every step
    const held = Object.fromEntries(
      Object.entries(await redis.hgetall(`{${prefix}}:held`)).map(([user, n]) => [user.slice(1), Number(n)])
    )
    const modelHeld = Object.fromEntries(Array.from(HashMap.toEntries(state.counts), ([user, n]) => [String(user), n]))
    if (JSON.stringify(held, Object.keys(held).sort()) !== JSON.stringify(modelHeld, Object.keys(modelHeld).sort())) {
      return `${what}: counts ${JSON.stringify(held)} in the Lua, ${JSON.stringify(modelHeld)} in the model`
    }
    for (const user of USERS) {
      const start = `${encode(user).length.toString(16).padStart(8, "0")}${encode(user)}`
      const luaLine = (await redis.zrangebylex(`{${prefix}}:lines`, `[${start}`, `(${start}\xff`)).map((member) =>
        member.slice(start.length + 16)
      )
      const line = HashMap.get(state.lines, user)
      const modelLine =
        line._tag === "None"
          ? []
          : Queue.toArray(line.value.waiters)
              .filter((waiter) => waiterOf.has(luaIdOf.get(waiter.id)!))
              .map((waiter) => luaIdOf.get(waiter.id)!)
      if (JSON.stringify(luaLine) !== JSON.stringify(modelLine)) {
        return `${what}: user ${user}'s line ${JSON.stringify(luaLine)} in the Lua, ${JSON.stringify(modelLine)} in the model`
      }
    }
    const luaRing = (await redis.zrange(`{${prefix}}:ready`, 0, -1)).map((user) => Number(user.slice(1)))
    const modelRing = Queue.toArray(state.turns)
      .filter(([user, turn]) => {
        const line = HashMap.get(state.lines, user)
        return line._tag === "Some" && line.value.turn === turn
      })
      .map(([user]) => user)
    if (JSON.stringify(luaRing) !== JSON.stringify(modelRing)) {
      return `${what}: the ring ${JSON.stringify(luaRing)} in the Lua, ${JSON.stringify(modelRing)} in the model`
    }
  }
  return undefined
}

describe("store.lua against the model", () => {
  it.live.prop(
    "random events give the same decisions, admissions, counts, lines and ring, step by step",
    [FastCheck.array(step, { minLength: 10, maxLength: 60 })],
    ([steps]) =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        const problem = yield* Effect.acquireUseRelease(
          Effect.sync(() => new Redis(redisUrl)),
          (redis) => Effect.promise(() => compare(redis, prefix, steps)),
          (redis) =>
            Effect.zipRight(
              deleteKeys(prefix),
              Effect.promise(() => redis.quit())
            )
        )
        expect(problem).toBeUndefined()
      }),
    { fastCheck: { numRuns: 200 } }
  )
})
