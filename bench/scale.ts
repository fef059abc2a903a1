import { Effect, HashMap } from "effect"
import type { QueueManager } from "../src/index.js"
import {
  effectContender,
  LIMIT,
  makeManager,
  median,
  repeatOps,
  sampleInterleaved,
  timingSampling,
  USERS as USERS_PER_SAMPLE,
  type Contender
} from "./harness.js"
import { describeSampling, nanos, num, ratioTarget, timingRow, type Benchmark } from "./report.js"

const SMALL = 100

const SMALL_NEW = "small manager, users holding nothing"
const LARGE_NEW = "large manager, users holding nothing"
const SMALL_HOLDING = "small manager, users already holding a slot"
const LARGE_HOLDING = "large manager, users already holding a slot"
const SMALL_MAP = "the same entry changes on the small manager's bare `HashMap`"
const LARGE_MAP = "the same entry changes on the large manager's bare `HashMap`"

/** A manager in which users `0 .. users - 1` each hold one slot (taken with `tryAcquire`). */
const filledManager = (users: number): QueueManager.Service => {
  const queue = makeManager({ maxUserQueue: LIMIT })
  Effect.runSync(
    repeatOps(users, (user) =>
      Effect.flatMap(queue.tryAcquire(user), (ok) => (ok ? Effect.void : Effect.dieMessage(`prefill refused ${user}`)))
    )
  )
  if (Effect.runSync(queue.activeUsers) !== users) throw new Error("prefill: wrong number of users")
  return queue
}

/**
 * Benchmark 3: the hit path of `withSlot` in a manager where 100 users hold a slot, and in one
 * where 1,000,000 do, for users holding nothing (an entry is added and removed) and for users
 * already holding one (an entry is updated twice).
 */
export const scale: Benchmark = {
  id: "scale",
  rows: [SMALL_NEW, LARGE_NEW, SMALL_HOLDING, LARGE_HOLDING, SMALL_MAP, LARGE_MAP],
  run: async (quick) => {
    const large = quick ? 10_000 : 1_000_000
    const filled = new Map([
      [SMALL, filledManager(SMALL)],
      [large, filledManager(large)]
    ])
    /** Users already holding a slot, spread over the filled ids. */
    const holder = (users: number) => {
      const stride = Math.max(1, Math.floor(users / USERS_PER_SAMPLE))
      return (i: number) => (i % Math.min(users, USERS_PER_SAMPLE)) * stride
    }
    /** Users holding nothing: the ids above the filled ones. */
    const newcomer = (users: number) => (i: number) => users + (i % USERS_PER_SAMPLE)
    const specs = [
      { name: SMALL_NEW, users: SMALL, reference: SMALL_NEW, user: newcomer(SMALL) },
      { name: LARGE_NEW, users: large, reference: SMALL_NEW, user: newcomer(large) },
      { name: SMALL_HOLDING, users: SMALL, reference: SMALL_HOLDING, user: holder(SMALL) },
      { name: LARGE_HOLDING, users: large, reference: SMALL_HOLDING, user: holder(large) }
    ]
    /** Adds and removes the entry of `user(i)` on a copy of the manager's counts, and nothing else. */
    const bareMap = (name: string, users: number): Contender => {
      let counts = Effect.runSync(filled.get(users)!.snapshot)
      const user = newcomer(users)
      return effectContender(name, (i) =>
        Effect.sync(() => {
          counts = HashMap.remove(HashMap.set(counts, user(i), 1), user(i))
        })
      )
    }
    const contenders: ReadonlyArray<Contender> = [
      ...specs.map(({ name, user, users }) => {
        const queue = filled.get(users)!
        return effectContender(name, (i) => queue.withSlot(user(i))(Effect.void))
      }),
      bareMap(SMALL_MAP, SMALL),
      bareMap(LARGE_MAP, large)
    ]
    const sampling = timingSampling(quick)
    const samples = await sampleInterleaved(contenders, sampling)
    const growth = (small: string, big: string) => median(samples.get(big)!) - median(samples.get(small)!)
    const mapGrowth = growth(SMALL_MAP, LARGE_MAP)
    const hitGrowth = growth(SMALL_NEW, LARGE_NEW)
    return {
      title: `3. Scale: the hit path with ${num(SMALL)} and with ${num(large)} users holding a slot`,
      setup:
        `Two managers (limit ${LIMIT}), one where users \`0 .. ${SMALL - 1}\` each hold one slot and one where users ` +
        `\`0 .. ${num(large - 1)}\` do (taken with \`tryAcquire\` beforehand, never released), both alive during the ` +
        `measurement, so both run with the same heap. An operation is \`withSlot(user)(Effect.void)\`, for ` +
        `${num(USERS_PER_SAMPLE)} users in turn: either users holding nothing (ids above the filled ones: the user's entry ` +
        `is added, then removed) or users already holding a slot (spread over the filled ids: the entry goes from 1 to 2 ` +
        `and back; the small manager cycles through its ${SMALL} holders). The last two rows are explained below the ` +
        `table. ` +
        describeSampling(sampling, "the small manager with the same kind of users"),
      header: ["contender", "users holding a slot", "median per operation", "vs the same on the small manager"],
      rows: [
        ...specs,
        { name: SMALL_MAP, users: SMALL, reference: SMALL_MAP },
        { name: LARGE_MAP, users: large, reference: SMALL_MAP }
      ].map(({ name, users, reference }) => {
        const [, perOp, vs] = timingRow(samples, name, reference)
        return [name, num(users), perOp!, vs!]
      }),
      targets: [
        ratioTarget("scale: users holding nothing, large vs small manager", samples, LARGE_NEW, SMALL_NEW, 2),
        ratioTarget("scale: users holding a slot, large vs small manager", samples, LARGE_HOLDING, SMALL_HOLDING, 2)
      ],
      notes: [
        `Where the growth comes from: the last two rows add and remove the same entries (users holding nothing) on a ` +
          `copy of each manager's \`HashMap\` of counts, and nothing else. That costs ` +
          `${nanos(mapGrowth)} more per operation on the large map; the hit path costs ${nanos(hitGrowth)} more in ` +
          `the large manager. The persistent \`HashMap\` (a trie, deeper with more entries) accounts for ` +
          `${num((100 * mapGrowth) / hitGrowth)}% of the growth.`
      ]
    }
  }
}
