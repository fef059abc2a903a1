import {
  Cause,
  Clock,
  ConfigError,
  Context,
  DefaultServices,
  Effect,
  Exit,
  FiberId,
  FiberRef,
  HashSet,
  LogLevel,
  Metric,
  Tracer
} from "effect"
import { Fiber } from "effect"
import type { AcquireOptions, Options, Service, SlotOptions, UserId, UserLimit } from "../QueueManager.js"
import * as QueueMetrics from "../QueueMetrics.js"
import { validateLimit } from "./config.js"
import { LeaseLost, QueueFull, QueueShutdown, type StoreUnavailable } from "./errors.js"
import { makeReporter } from "./metrics.js"
import { makeMemoryStore } from "./memoryStore.js"
import type { Grant, Lease, Outcome, Store } from "./store.js"
import { withValidUserId } from "./userId.js"

type Restore = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
type RuntimeFiber = Fiber.RuntimeFiber<unknown, unknown>

/** Effect's built-in tracer: its spans reach no exporter, so we skip ours while it is in use. */
const builtInTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/**
 * Runs `body` with its fiber, inside a span `name` when a tracer is installed (e.g.
 * OpenTelemetry). With the built-in tracer, or tracing disabled, no span is made: a span
 * costs more than the whole hit path.
 */
const traced = <A, E, R>(
  name: string,
  attributes: Record<string, unknown>,
  body: (fiber: RuntimeFiber) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) =>
    fiber.currentTracer === builtInTracer || !fiber.getFiberRef(FiberRef.currentTracerEnabled)
      ? body(fiber)
      : Effect.withSpan(body(fiber), name, { attributes, captureStackTrace: false })
  )

/** `first` then `second`, skipping `first` when it is `Effect.void` (disabled logs on the hit path). */
const andThen = <A, E, R>(first: Effect.Effect<void>, second: Effect.Effect<A, E, R>) =>
  first === Effect.void ? second : Effect.zipRight(first, second)

/** Logs at debug level, skipping the work when the fiber's minimum level filters it out. */
const debug = (fiber: RuntimeFiber, message: string, annotations: Record<string, unknown>) =>
  LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Debug)
    ? Effect.void
    : Effect.annotateLogs(Effect.logDebug(message), annotations)

const validateUserLimit = (userLimit: unknown) =>
  userLimit === undefined || typeof userLimit === "function"
    ? Effect.succeed(userLimit as UserLimit | undefined)
    : Effect.fail(
        ConfigError.InvalidData(
          ["userLimit"],
          `userLimit must be a function (userId, maxUserQueue) => number, got ${typeof userLimit}`
        )
      )

/** Until the slot is released, interrupts the calling fiber (the holder of a `slot`) if `lease` is lost. */
const interruptOnLoss = (lease: Lease): Effect.Effect<void> =>
  Effect.withFiberRuntime((holder) => {
    lease.watch!(() => holder.unsafeInterruptAsFork(FiberId.none))
    return Effect.void
  })

/**
 * Whether `fiber` has children still running. A lost lease interrupts the fiber running the
 * work, and with it the fiber's children, which must then all belong to the work. (Effect
 * keeps them on the fiber without a public synchronous read; without one, assume some.)
 */
const hasChildren = (fiber: RuntimeFiber): boolean => {
  const children = (fiber as { readonly getChildren?: () => ReadonlySet<unknown> }).getChildren?.()
  return children === undefined || children.size > 0
}

/**
 * Runs `announce`, then `work` (made interruptible by `restore`), then `release`; a lost
 * `lease` interrupts the work, which then fails with `LeaseLost`; interrupting the caller
 * interrupts the work. Called with interruption disabled, so the release is in place before
 * anything can interrupt the work. The work runs in the caller's fiber, interrupted by a lost
 * lease under an id of this call's own, whose interruption is then taken back (any other
 * stays, such as an enclosing `withSlot`'s lost lease); a caller with children running (which
 * that would interrupt too) runs it in a child fiber.
 */
const guarded = <A, E, R>(
  restore: Restore,
  work: Effect.Effect<A, E, R>,
  release: Effect.Effect<unknown>,
  announce: Effect.Effect<void>,
  lease: Lease,
  userId: UserId
): Effect.Effect<A, E | LeaseLost, R> =>
  Effect.withFiberRuntime((caller) => {
    const body = andThen(announce, restore(work))
    // built only when needed: an error captures a stack trace
    const leaseLost = (): Effect.Effect<A, E | LeaseLost> => Effect.fail(new LeaseLost({ userId }))
    let lostAs: FiberId.FiberId | undefined
    const interruptOnLoss = (fiber: RuntimeFiber) =>
      lease.watch!(() => {
        lostAs = FiberId.unsafeMake()
        fiber.unsafeInterruptAsFork(lostAs)
      })
    if (hasChildren(caller)) {
      return Effect.flatMap(Effect.fork(Effect.ensuring(body, release)), (child) => {
        interruptOnLoss(child)
        return Effect.flatMap(
          Effect.onInterrupt(restore(Fiber.await(child)), () => Fiber.interrupt(child)),
          // as Fiber.join: what the work set in FiberRefs stays set after it
          (exit) => Effect.zipRight(Fiber.inheritAll(child), lostAs && Exit.isInterrupted(exit) ? leaseLost() : exit)
        )
      })
    }
    interruptOnLoss(caller)
    return Effect.flatMap(Effect.exit(body), (exit) =>
      Effect.flatMap(release, (): Effect.Effect<A, E | LeaseLost> => {
        if (lostAs === undefined) return exit
        // take back this loss's interruption: if none other is left, the work stopped for the loss
        const others = HashSet.remove(Cause.interruptors(caller.getFiberRef(FiberRef.interruptedCause)), lostAs)
        const rest = HashSet.reduce(others, Cause.empty as Cause.Cause<never>, (all, id) =>
          Cause.sequential(all, Cause.interrupt(id))
        )
        return Effect.zipRight(
          FiberRef.set(FiberRef.interruptedCause, rest),
          HashSet.size(others) === 0 && Exit.isInterrupted(exit) ? leaseLost() : exit
        )
      })
    )
  })

/** Builds a store for a manager's global options. */
export type MakeStore<E, R> = (maxTotal: number, maxWaitingPerUser: number) => Effect.Effect<Store, E, R>

/** Builds the QueueManager service over a fresh in-memory store. */
export const make = (options: Options): Effect.Effect<Service, ConfigError.ConfigError> =>
  makeWith(options, (maxTotal, maxWaitingPerUser) => Effect.sync(() => makeMemoryStore(maxTotal, maxWaitingPerUser)))

/** Builds the QueueManager service (the policy) over the store `makeStore` builds. */
export const makeWith = <E, R>(
  options: Options,
  makeStore: MakeStore<E, R>
): Effect.Effect<Service, ConfigError.ConfigError | E, R> =>
  Effect.gen(function* () {
    let maxUserQueue = yield* validateLimit("maxUserQueue", options.maxUserQueue)
    const maxTotal = yield* validateLimit("maxTotal", options.maxTotal ?? 0)
    const maxWaitingPerUser = yield* validateLimit("maxWaitingPerUser", options.maxWaitingPerUser ?? 100)
    const userLimit = yield* validateUserLimit(options.userLimit)
    const store = yield* makeStore(maxTotal, maxWaitingPerUser)
    const reporter = makeReporter(store.local)
    const report = (fiber: RuntimeFiber) => reporter(fiber.getFiberRef(FiberRef.currentMetricLabels))

    /** The limit of `userId` under the default `base`; a tier function returning garbage is a defect. */
    const limitUnder = (userId: UserId, base: number): number => {
      if (userLimit === undefined) return base
      const limit = userLimit(userId, base)
      if (Number.isSafeInteger(limit) && limit >= 0) return limit
      throw new Cause.IllegalArgumentException(
        `QueueManager: userLimit(${JSON.stringify(userId)}) returned ${String(limit)}: must be a whole number >= 0 (0 = no limit)`
      )
    }

    const release = (userId: UserId, grant: Grant | undefined) =>
      traced("QueueManager.release", { userId }, (fiber) => {
        const active = store.release(userId, grant?.lease)
        report(fiber)
        if (active === undefined) return debug(fiber, "release ignored: no slot held", { userId })
        return debug(fiber, "slot released", active === "sent" ? { userId } : { userId, active })
      })

    /**
     * Takes a slot of `userId` (refusing or waiting as `options` say), then runs `use` with the
     * grant; `use` must register the release before running `announce`. Uninterruptible
     * except for the wait and what `use` restores.
     */
    const acquire = <A, E, R>(
      name: string,
      userId: UserId,
      options: SlotOptions | undefined,
      use: (restore: Restore, announce: Effect.Effect<void>, grant: Grant) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | QueueFull | QueueShutdown | StoreUnavailable, R> =>
      withValidUserId(userId, (id) =>
        Effect.uninterruptibleMask((restore) =>
          traced<A, E | QueueFull | QueueShutdown | StoreUnavailable, R>(name, { userId: id, ...options }, (fiber) => {
            const bypass = options?.bypassUserLimit === true
            const limit = limitUnder(id, maxUserQueue)
            const wait = options?.onFull === "wait"
            const decide = (
              outcome: Outcome
            ): Effect.Effect<A, E | QueueFull | QueueShutdown | StoreUnavailable, R> => {
              report(fiber)
              switch (outcome._tag) {
                case "Acquired":
                  return use(
                    restore,
                    debug(fiber, "slot acquired", { userId: id, active: outcome.grant.active, limit, bypass }),
                    outcome.grant
                  )
                case "Refused": {
                  const { reason, active, limit } = outcome
                  return Effect.zipRight(
                    debug(fiber, "slot refused", { userId: id, reason, active, limit, bypass }),
                    Effect.fail(new QueueFull({ userId: id, reason, active, limit }))
                  )
                }
                case "Shutdown":
                  return Effect.fail(new QueueShutdown({ userId: id }))
                case "Waiting": {
                  const ticket = outcome.ticket
                  return Effect.flatMap(Clock.currentTimeMillis, (since) =>
                    debug(fiber, "slot waiting", { userId: id, waiting: store.local.waiting, bypass }).pipe(
                      Effect.zipRight(restore(store.awaitTurn(ticket))),
                      Effect.onExit((exit) =>
                        Exit.isSuccess(exit) ? Effect.void : Effect.tap(store.leave(ticket), () => report(fiber))
                      ),
                      Effect.flatMap((grant) =>
                        use(
                          restore,
                          Effect.flatMap(Clock.currentTimeMillis, (now) => {
                            report(fiber)
                            return Effect.zipRight(
                              Metric.update(QueueMetrics.waitTime, (now - since) / 1000),
                              debug(fiber, "slot acquired after waiting", {
                                userId: id,
                                active: grant.active,
                                limit,
                                bypass,
                                waitedMillis: now - since
                              })
                            )
                          }),
                          grant
                        )
                      )
                    )
                  )
                }
              }
            }
            return store.now
              ? decide(store.now.acquire(id, limit, bypass, wait))
              : Effect.flatMap(store.acquire(id, limit, bypass, wait), decide)
          })
        )
      )

    const resize: Service["resize"] = (limits) =>
      Effect.gen(function* () {
        const nextDefault =
          limits.maxUserQueue === undefined ? maxUserQueue : yield* validateLimit("maxUserQueue", limits.maxUserQueue)
        const nextTotal =
          limits.maxTotal === undefined ? store.maxTotal() : yield* validateLimit("maxTotal", limits.maxTotal)
        yield* store.resize(nextTotal, (userId) => limitUnder(userId, nextDefault))
        maxUserQueue = nextDefault
        yield* Effect.withFiberRuntime((fiber) => {
          report(fiber)
          return Effect.annotateLogs(Effect.logInfo("QueueManager resized"), { maxUserQueue, maxTotal: nextTotal })
        })
      })

    const shutdown = Effect.withFiberRuntime((fiber) => {
      const first = !store.isShutdown()
      return Effect.zipRight(
        store.shutdown,
        Effect.suspend(() => {
          report(fiber)
          return first
            ? Effect.annotateLogs(Effect.logInfo("QueueManager shut down"), { inFlight: store.local.inFlight })
            : Effect.void
        })
      )
    })

    yield* Effect.annotateLogs(Effect.logInfo("QueueManager ready"), {
      maxUserQueue,
      maxTotal,
      maxWaitingPerUser,
      tiers: userLimit !== undefined
    })

    return {
      get maxUserQueue() {
        return maxUserQueue
      },
      limitFor: (userId) => withValidUserId(userId, (id) => Effect.sync(() => limitUnder(id, maxUserQueue))),
      activeCount: (userId) => withValidUserId(userId, store.count),
      activeUsers: store.users,
      tryAcquire: (userId: UserId, options?: AcquireOptions) =>
        acquire("QueueManager.tryAcquire", userId, options, (_restore, announce) => Effect.as(announce, true)).pipe(
          Effect.catchTag("QueueFull", () => Effect.succeed(false))
        ),
      release: (userId) => withValidUserId(userId, (id) => release(id, undefined)),
      slot: (userId, options) =>
        acquire("QueueManager.slot", userId, options, (_restore, announce, grant) =>
          Effect.zipRight(
            Effect.addFinalizer(() => release(userId, grant)),
            grant.lease?.watch === undefined ? announce : Effect.zipRight(interruptOnLoss(grant.lease), announce)
          )
        ),
      withSlot: (userId, options) => (self) =>
        acquire("QueueManager.withSlot", userId, options, (restore, announce, grant) =>
          grant.lease?.watch === undefined
            ? Effect.ensuring(andThen(announce, restore(self)), release(userId, grant))
            : guarded(restore, self, release(userId, grant), announce, grant.lease, userId)
        ),
      snapshot: store.snapshot,
      stats: Effect.map(store.totals, (totals) => ({
        ...totals,
        maxUserQueue,
        maxTotal: store.maxTotal(),
        maxWaitingPerUser,
        shutdown: store.isShutdown()
      })),
      resize,
      shutdown,
      awaitIdle: store.awaitIdle,
      drain: Effect.zipRight(shutdown, store.awaitIdle)
    } satisfies Service
  })
