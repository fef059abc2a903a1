import { Effect, Fiber } from "effect"
import v8 from "node:v8"
import pLimit, { type LimitFunction } from "p-limit"
import { collect, LIMIT, makeManager, median, repeatOps } from "./harness.js"
import { num, type Benchmark } from "./report.js"

const TRY_ACQUIRE = "QueueManager, slot taken with `tryAcquire`"
const WITH_SLOT = "QueueManager, `withSlot` around a suspended fiber"
const FIBERS = "suspended fibers alone (no limiter)"
const P_LIMIT = "`Map` of `p-limit`, one pending task each"

/** Users holding a slot: `fill` makes `users` of them hold one, `idle` ends every hold. */
interface Holders {
  readonly fill: (users: number) => Promise<void>
  readonly idle: () => Promise<void>
}

/** A body that suspends forever and registers nothing (unlike `Effect.never`, no timer). */
const suspended = Effect.async<never>(() => {})

/**
 * Forks `users` fibers running `hold(user)(body)`, where the body counts itself and suspends,
 * and returns once every body runs; `idle` interrupts them all.
 */
const fiberHolders = (
  hold: (user: number) => (body: Effect.Effect<never>) => Effect.Effect<unknown, unknown>
): Holders => {
  let fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
  let running = 0
  const body = Effect.suspend(() => {
    running++
    return suspended
  })
  return {
    fill: (users) =>
      Effect.runPromise(
        Effect.gen(function* () {
          for (let user = 0; user < users; user++) fibers.push(yield* Effect.forkDaemon(hold(user)(body)))
          while (running < users) yield* Effect.yieldNow()
        })
      ),
    idle: async () => {
      await Effect.runPromise(Fiber.interruptAll(fibers))
      fibers = []
      running = 0
    }
  }
}

const tryAcquireHolders = (): Holders => {
  const queue = makeManager({ maxUserQueue: LIMIT })
  let filled = 0
  return {
    fill: (users) => {
      filled = users
      return Effect.runPromise(
        repeatOps(users, (user) =>
          Effect.flatMap(queue.tryAcquire(user), (ok) => (ok ? Effect.void : Effect.die(user)))
        )
      )
    },
    idle: () => Effect.runPromise(repeatOps(filled, (user) => queue.release(user)))
  }
}

const withSlotHolders = (): Holders => {
  const queue = makeManager({ maxUserQueue: LIMIT })
  return fiberHolders((user) => queue.withSlot(user))
}

const pLimitHolders = (): Holders => {
  const limiters = new Map<number, LimitFunction>()
  let finish: Array<() => void> = []
  let tasks: Array<Promise<void>> = []
  return {
    fill: async (users) => {
      for (let user = 0; user < users; user++) {
        const limit = pLimit(LIMIT)
        limiters.set(user, limit)
        tasks.push(limit(() => new Promise<void>((resolve) => finish.push(resolve))))
      }
      await new Promise((resolve) => setImmediate(resolve))
      if (finish.length !== users) throw new Error("p-limit: not every task started")
    },
    idle: async () => {
      for (const resolve of finish) resolve()
      await Promise.all(tasks)
      finish = []
      tasks = []
    }
  }
}

/** Each contender, with the number of users of a full run (fibers cost kilobytes each; a count, bytes). */
const contenders: ReadonlyArray<readonly [string, () => Holders, number]> = [
  [TRY_ACQUIRE, tryAcquireHolders, 1_000_000],
  [WITH_SLOT, withSlotHolders, 100_000],
  [FIBERS, () => fiberHolders(() => (body) => body), 100_000],
  [P_LIMIT, pLimitHolders, 100_000]
]

/** What is kept once idle, as a share of what was held: under 1% is nothing but GC noise. */
const NOISE = 0.01

/**
 * The heap in use after two full collections, without the code spaces: code compiled while a
 * run goes on (the JIT optimising a hot function) is not data held for the users.
 */
const heapUsed = (): number => {
  collect()
  collect()
  return v8
    .getHeapSpaceStatistics()
    .filter((space) => !space.space_name.startsWith("code"))
    .reduce((sum, space) => sum + space.space_used_size, 0)
}

/** Heap bytes grown while `users` hold a slot, and kept once they are all idle. */
const measureOnce = async (make: () => Holders, users: number) => {
  const holders = make()
  const base = heapUsed()
  await holders.fill(users)
  const held = heapUsed() - base
  await holders.idle()
  const kept = heapUsed() - base
  return { held, kept }
}

/**
 * Benchmark 4: heap bytes per user holding a slot, and per user kept after every user went
 * idle, for the manager (state alone, and with a fiber per user) and a map of `p-limit`.
 * Per user = the slope between a run with `users` and one with a tenth of them, so that
 * what does not grow with the users (compiled code, the empty structures) drops out.
 */
export const memory: Benchmark = {
  id: "memory",
  rows: contenders.map(([name]) => name),
  run: async (quick) => {
    const rounds = quick ? 1 : 3
    const sizes = new Map(contenders.map(([name, , users]) => [name, quick ? users / 50 : users]))
    const slopes = new Map(contenders.map(([name]) => [name, { held: [] as Array<number>, kept: [] as Array<number> }]))
    const keptTotal = new Map(contenders.map(([name]) => [name, [] as Array<number>]))
    for (const [name, make] of contenders) await measureOnce(make, sizes.get(name)!)
    for (let round = 0; round < rounds; round++) {
      for (const [name, make] of contenders) {
        const users = sizes.get(name)!
        const small = await measureOnce(make, users / 10)
        const large = await measureOnce(make, users)
        slopes.get(name)!.held.push((large.held - small.held) / (users * 0.9))
        slopes.get(name)!.kept.push((large.kept - small.kept) / (users * 0.9))
        keptTotal.get(name)!.push(large.kept)
      }
    }
    const perUser = (name: string, which: "held" | "kept") => median(slopes.get(name)![which])
    const share = (name: string) => perUser(name, "kept") / perUser(name, "held")
    const describe = (name: string) =>
      `${num(perUser(name, "kept"), 1)} of ${num(perUser(name, "held"))} (${num(100 * share(name), 2)}%)`
    return {
      title: "4. Memory: bytes per user holding a slot, and kept once idle",
      setup:
        `Users \`0 .. n - 1\` each take one slot (limit ${LIMIT}); the heap in use is read after two full GCs: before ` +
        `(the empty manager or map already built), while every user holds its slot, and after every slot was given ` +
        `back. Per user = the difference between a run with n users and one with n / 10, divided by 0.9 n, so that ` +
        `what does not grow with the users drops out; the last column is the whole heap growth left after the n-user ` +
        `run (a few hundred KiB either way is GC noise). \`tryAcquire\` holds a slot with no fiber: the manager's own ` +
        `state. \`withSlot\` holds it in a forked fiber suspended in its body, the realistic case; the row without a ` +
        `limiter gives the fibers' own share. p-limit cannot hold a slot without a running task, so its row holds one ` +
        `pending promise per user. The bookkeeping arrays of the benchmark (fibers, resolvers: 8 bytes a user each) ` +
        `are included; code spaces are not counted. Median of ${rounds} round(s), after a warm-up run with n users ` +
        `(the first run with many fibers leaves about 9 MB that Effect and V8 keep for good, with or without a limiter).`,
      header: [
        "contender",
        "users (n)",
        "bytes per user holding a slot",
        "bytes per user kept after all went idle",
        "heap kept after n users went idle"
      ],
      rows: contenders.map(([name]) => [
        name,
        num(sizes.get(name)!),
        num(perUser(name, "held"), 1),
        num(perUser(name, "kept"), 1),
        `${num(median(keptTotal.get(name)!) / 1024)} KiB`
      ]),
      targets: [
        {
          what: "memory: kept by the manager once every user is idle",
          goal: `nothing (under ${num(100 * NOISE)}% of the bytes held: GC noise)`,
          value: `bytes kept of bytes held per user: ${describe(TRY_ACQUIRE)} with \`tryAcquire\`, ${describe(WITH_SLOT)} with \`withSlot\``,
          met: share(TRY_ACQUIRE) < NOISE && share(WITH_SLOT) < NOISE
        }
      ],
      notes: [
        `With a fiber, the manager's share is ${num(perUser(WITH_SLOT, "held") - perUser(FIBERS, "held"))} bytes per ` +
          `user (the \`withSlot\` row minus the fibers row), against ${num(perUser(TRY_ACQUIRE, "held"))} for the count ` +
          "alone: a fiber suspended inside `withSlot` keeps alive the continuations and closures of its acquisition and " +
          "of the release still to come.",
        "A map of p-limit limiters keeps every limiter it ever made unless the application deletes idle ones itself " +
          '(p-limit has no hook for "idle"); the manager drops a user\'s entry when its count reaches zero.'
      ]
    }
  }
}
