import { Effect, FastCheck, Fiber, HashMap, TestClock } from "effect"
import { QueueManager } from "../src/index.js"

/** Runs a body inside a slot: the library's two forms, and deliberately broken variants. */
export type Guard = (
  q: QueueManager.Service,
  userId: QueueManager.UserId,
  options: QueueManager.SlotOptions
) => <A, E, R>(body: Effect.Effect<A, E, R>) => Effect.Effect<A, E | QueueManager.SlotError, R>

/** One request of a random concurrent program. */
export interface Request {
  readonly user: number
  readonly bypass: boolean
  readonly form: "slot" | "withSlot"
  readonly startAt: number
  readonly holdFor: number
  readonly outcome: "succeed" | "fail" | "die"
  readonly interruptAt: number | null
}

/** A random concurrent program: a per-user limit and requests that start, hold and end at random times. */
export interface Program {
  readonly limit: number
  readonly requests: ReadonlyArray<Request>
}

const request: FastCheck.Arbitrary<Request> = FastCheck.record({
  user: FastCheck.integer({ min: 0, max: 2 }),
  bypass: FastCheck.boolean(),
  form: FastCheck.constantFrom("slot", "withSlot"),
  startAt: FastCheck.integer({ min: 0, max: 20 }),
  holdFor: FastCheck.integer({ min: 0, max: 20 }),
  outcome: FastCheck.constantFrom("succeed", "fail", "die"),
  interruptAt: FastCheck.option(FastCheck.integer({ min: 0, max: 40 }))
})

/** Programs of up to 30 requests over 3 users with a limit of 0 (none) to 3. */
export const program: FastCheck.Arbitrary<Program> = FastCheck.record({
  limit: FastCheck.integer({ min: 0, max: 3 }),
  requests: FastCheck.array(request, { maxLength: 30 })
})

/** The library's own forms: `slot` in a scope of its own, or `withSlot`. */
export const libraryGuard =
  (form: Request["form"]): Guard =>
  (q, userId, options) =>
  (body) =>
    form === "slot" ? Effect.scoped(Effect.zipRight(q.slot(userId, options), body)) : q.withSlot(userId, options)(body)

/**
 * Runs `prog` on a fresh manager under the TestClock and returns every broken invariant:
 * a body running without its slot counted, more than `limit` normal slots in flight for a
 * user, or state left behind once every request has ended.
 */
export const violations = (prog: Program, guardFor: (form: Request["form"]) => Guard) =>
  Effect.gen(function* () {
    const q = yield* QueueManager.make({ maxUserQueue: prog.limit })
    const found: Array<string> = []
    const running = new Map<number, { all: number; normal: number }>()

    const body = (r: Request) =>
      Effect.gen(function* () {
        const now = running.get(r.user) ?? { all: 0, normal: 0 }
        const next = { all: now.all + 1, normal: now.normal + (r.bypass ? 0 : 1) }
        running.set(r.user, next)
        const counted = yield* q.activeCount(r.user)
        if (counted < next.all) found.push(`user ${r.user}: ${next.all} bodies running, ${counted} slots counted`)
        if (prog.limit > 0 && next.normal > prog.limit) found.push(`user ${r.user}: ${next.normal} > ${prog.limit}`)
        yield* Effect.sleep(r.holdFor)
        if (r.outcome === "fail") yield* Effect.fail("failed")
        if (r.outcome === "die") yield* Effect.die("died")
      }).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            const now = running.get(r.user)!
            running.set(r.user, { all: now.all - 1, normal: now.normal - (r.bypass ? 0 : 1) })
          })
        )
      )

    const fibers = yield* Effect.forEach(prog.requests, (r) =>
      Effect.fork(
        Effect.zipRight(Effect.sleep(r.startAt), guardFor(r.form)(q, r.user, { bypassUserLimit: r.bypass })(body(r)))
      ).pipe(
        Effect.tap((fiber) =>
          r.interruptAt === null
            ? Effect.void
            : Effect.fork(Effect.zipRight(Effect.sleep(r.interruptAt), Fiber.interrupt(fiber)))
        )
      )
    )
    yield* TestClock.adjust(100)
    yield* Effect.forEach(fibers, Fiber.await)

    const left = yield* q.snapshot
    if (HashMap.size(left) > 0) found.push(`state left behind: ${JSON.stringify(Array.from(left))}`)
    if ((yield* q.activeUsers) !== 0) found.push("activeUsers is not 0 at the end")
    for (const [user, n] of running) if (n.all !== 0) found.push(`user ${user}: ${n.all} bodies never ended`)
    for (let user = 0; user < 3; user++) {
      const count = yield* q.activeCount(user)
      if (count !== 0) found.push(`user ${user}: activeCount ${count} at the end`)
    }
    return found
  })
