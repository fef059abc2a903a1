import { expect, it } from "@effect/vitest"
import { Effect, FastCheck, Fiber, HashMap, Scheduler, TestClock } from "effect"
import { QueueManager } from "../src/index.js"

/** Runs a body inside a slot: the library's two forms, and deliberately broken variants. */
export type Guard = (
  q: QueueManager.Service,
  userId: QueueManager.UserId,
  options: QueueManager.SlotOptions
) => <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | QueueManager.SlotError | QueueManager.LeaseLost, R>

/** One request of a random concurrent program. */
export interface Request {
  readonly user: number
  readonly bypass: boolean
  readonly form: "slot" | "withSlot"
  readonly onFull: "reject" | "wait"
  readonly startAt: number
  readonly holdFor: number
  readonly outcome: "succeed" | "fail" | "die"
  readonly interruptAt: number | null
  /** An `Effect.timeout` around the acquisition (`slot`) or the whole call (`withSlot`). */
  readonly timeoutAfter: number | null
  /** Whether the request's fiber runs on a scheduler that runs tasks at once: woken inside the step that admits it. */
  readonly atOnce: boolean
}

/** A live resize at a random time. */
export interface Resize {
  readonly at: number
  readonly maxUserQueue: number
  readonly maxTotal: number
}

/** A random concurrent program: limits, and requests that start, hold and end at random times. */
export interface Program {
  readonly limit: number
  readonly maxTotal: number
  /** User 0 gets one slot more than the default (a tier), and `tierWaiting` as its waiting bound. */
  readonly tiered: boolean
  readonly tierWaiting: number
  /** The waiting bound of the other users. */
  readonly maxWaitingPerUser: number
  readonly requests: ReadonlyArray<Request>
  readonly resizes: ReadonlyArray<Resize>
}

const time = FastCheck.integer({ min: 0, max: 20 })
const none = <A>() => FastCheck.constant<A | null>(null)

const request = (scheduling: boolean): FastCheck.Arbitrary<Request> =>
  FastCheck.record({
    user: FastCheck.integer({ min: 0, max: 2 }),
    bypass: FastCheck.boolean(),
    form: FastCheck.constantFrom("slot", "withSlot"),
    onFull: scheduling ? FastCheck.constantFrom("reject", "wait") : FastCheck.constant("reject"),
    startAt: time,
    holdFor: time,
    outcome: FastCheck.constantFrom("succeed", "fail", "die"),
    interruptAt: FastCheck.option(FastCheck.integer({ min: 0, max: 40 })),
    timeoutAfter: scheduling ? FastCheck.option(FastCheck.integer({ min: 0, max: 30 })) : none<number>(),
    atOnce: scheduling ? FastCheck.boolean() : FastCheck.constant(false)
  })

const limit = FastCheck.integer({ min: 0, max: 3 })

/** Programs of up to 30 requests over 3 users, refusing at once, with a per-user limit of 0 (none) to 3. */
export const program: FastCheck.Arbitrary<Program> = FastCheck.record({
  limit,
  maxTotal: FastCheck.constant(0),
  tiered: FastCheck.constant(false),
  tierWaiting: FastCheck.constant(0),
  maxWaitingPerUser: FastCheck.constant(0),
  requests: FastCheck.array(request(false), { maxLength: 30 }),
  resizes: FastCheck.constant([])
})

/** The same mixed with waiting (bounded per user, and per tier), a global cap, a tier and live resizes. */
export const scheduledProgram: FastCheck.Arbitrary<Program> = FastCheck.record({
  limit,
  maxTotal: limit,
  tiered: FastCheck.boolean(),
  tierWaiting: limit,
  maxWaitingPerUser: limit,
  requests: FastCheck.array(request(true), { maxLength: 30 }),
  resizes: FastCheck.array(
    FastCheck.record({ at: FastCheck.integer({ min: 0, max: 40 }), maxUserQueue: limit, maxTotal: limit }),
    { maxLength: 3 }
  )
})

/** The library's own forms: `slot` in a scope of its own, or `withSlot`. */
export const libraryGuard =
  (form: Request["form"]): Guard =>
  (q, userId, options) =>
  (body) =>
    form === "slot" ? Effect.scoped(Effect.zipRight(q.slot(userId, options), body)) : q.withSlot(userId, options)(body)

/** Runs each task as soon as it is scheduled, inside the call that scheduled it. */
export const atOnce = Scheduler.make((task) => task())

/** The highest bound among `values`, or `Infinity` if any of them is 0 (no limit). */
const loosest = (values: ReadonlyArray<number>) => (values.includes(0) ? Infinity : Math.max(...values))

/**
 * Runs `prog` on a fresh manager under the TestClock and returns every broken invariant:
 * a body running without its slot counted, a user or all users above the loosest limit in
 * force during the run, a request that never ended, or state left behind at the end.
 */
export const violations = (prog: Program, guardFor: (form: Request["form"]) => Guard) =>
  Effect.gen(function* () {
    const tiered = (user: number) => prog.tiered && user === 0
    const userLimit: QueueManager.UserLimit = (userId, base) =>
      tiered(userId as number) ? { running: base + 1, waiting: prog.tierWaiting } : base
    const q = yield* QueueManager.make({
      maxUserQueue: prog.limit,
      maxTotal: prog.maxTotal,
      maxWaitingPerUser: prog.maxWaitingPerUser,
      userLimit
    })
    const defaults = [prog.limit, ...prog.resizes.map((r) => r.maxUserQueue)]
    const userBound = (user: number) => loosest(defaults.map((base) => base + (tiered(user) ? 1 : 0)))
    const waitingBound = (user: number) => (tiered(user) ? prog.tierWaiting : prog.maxWaitingPerUser)
    const totalBound = loosest([prog.maxTotal, ...prog.resizes.map((r) => r.maxTotal)])
    const found: Array<string> = []
    const running = new Map<number, { all: number; normal: number }>()
    let total = 0

    const body = (r: Request) =>
      Effect.gen(function* () {
        const now = running.get(r.user) ?? { all: 0, normal: 0 }
        const next = { all: now.all + 1, normal: now.normal + (r.bypass ? 0 : 1) }
        running.set(r.user, next)
        total++
        const status = yield* q.status(r.user)
        if (status.active < next.all)
          found.push(`user ${r.user}: ${next.all} bodies running, ${status.active} slots counted`)
        if (status.maxWaiting !== waitingBound(r.user) || (status.maxWaiting > 0 && status.waiting > status.maxWaiting))
          found.push(`user ${r.user}: ${status.waiting} waiting, bound ${status.maxWaiting} of ${waitingBound(r.user)}`)
        if (next.normal > userBound(r.user)) found.push(`user ${r.user}: ${next.normal} > ${userBound(r.user)}`)
        if (total > totalBound) found.push(`${total} bodies running > maxTotal ${totalBound}`)
        // a body that holds for no time ends without suspending (so, woken at once, inside the step that admitted it)
        if (r.holdFor > 0) yield* Effect.sleep(r.holdFor)
        if (r.outcome === "fail") yield* Effect.fail("failed")
        if (r.outcome === "die") yield* Effect.die("died")
      }).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            const now = running.get(r.user)!
            running.set(r.user, { all: now.all - 1, normal: now.normal - (r.bypass ? 0 : 1) })
            total--
          })
        )
      )

    const call = (r: Request) => Effect.tapError(attempt(r), (error) => Effect.sync(() => checkRefusal(r, error)))
    /** A refusal for a full line names the user's own bound, and the line is that long. */
    const checkRefusal = (r: Request, error: unknown) => {
      if (!(error instanceof QueueManager.QueueFull) || error.reason !== "waiting") return
      if (error.limit !== waitingBound(r.user) || error.active < error.limit)
        found.push(
          `user ${r.user}: refused with ${error.active} of ${error.limit} waiting, bound ${waitingBound(r.user)}`
        )
    }
    const attempt = (r: Request) => {
      const guard = guardFor(r.form)(q, r.user, { bypassUserLimit: r.bypass, onFull: r.onFull })
      if (r.timeoutAfter === null) return guard(body(r))
      return r.form === "slot"
        ? Effect.scoped(
            Effect.zipRight(
              Effect.timeout(q.slot(r.user, { bypassUserLimit: r.bypass, onFull: r.onFull }), r.timeoutAfter),
              body(r)
            )
          )
        : Effect.timeout(guard(body(r)), r.timeoutAfter)
    }

    const fibers = yield* Effect.forEach(prog.requests, (r) =>
      Effect.fork(
        Effect.zipRight(Effect.sleep(r.startAt), r.atOnce ? Effect.withScheduler(call(r), atOnce) : call(r))
      ).pipe(
        Effect.tap((fiber) =>
          r.interruptAt === null
            ? Effect.void
            : Effect.fork(Effect.zipRight(Effect.sleep(r.interruptAt), Fiber.interrupt(fiber)))
        )
      )
    )
    for (const r of prog.resizes) {
      yield* Effect.fork(
        Effect.zipRight(Effect.sleep(r.at), q.resize({ maxUserQueue: r.maxUserQueue, maxTotal: r.maxTotal }))
      )
    }
    yield* TestClock.adjust(10_000)
    fibers.forEach((fiber, i) => {
      if (fiber.unsafePoll() === null) found.push(`request ${i} never ended`)
    })
    yield* Effect.forEach(fibers, Fiber.interrupt)

    const left = yield* q.snapshot
    if (HashMap.size(left) > 0) found.push(`state left behind: ${JSON.stringify(Array.from(left))}`)
    const stats = yield* q.stats
    if (stats.inFlight !== 0 || stats.activeUsers !== 0 || stats.waiting !== 0 || stats.waitingUsers !== 0) {
      found.push(`stats not empty at the end: ${JSON.stringify(stats)}`)
    }
    for (const [user, n] of running) if (n.all !== 0) found.push(`user ${user}: ${n.all} bodies never ended`)
    return found
  })

/** The check both kinds of random program are held to: run on the library, nothing is found wrong. */
const noViolations = ([prog]: readonly [Program]) =>
  Effect.gen(function* () {
    expect(yield* violations(prog, libraryGuard)).toEqual([])
  })

/** The properties of random concurrent programs, each with the given number of runs. */
export const concurrentProperties = (runs: { readonly plain: number; readonly scheduled: number }) => {
  it.effect.prop(
    "random concurrent slots that succeed, fail, die or are interrupted never exceed a limit and leave nothing",
    [program],
    noViolations,
    { fastCheck: { numRuns: runs.plain } }
  )
  it.effect.prop(
    "random programs mixing waiting, bypass, a global cap, tiers, resizes, timeouts, interruptions and defects stay within every limit, end every request and leave nothing",
    [scheduledProgram],
    noViolations,
    { fastCheck: { numRuns: runs.scheduled } }
  )
}
