import {
  Cause,
  Clock,
  ConfigError,
  Context,
  DefaultServices,
  Effect,
  Exit,
  FiberRef,
  HashMap,
  LogLevel,
  Metric,
  Tracer
} from "effect"
import type { Fiber } from "effect"
import type { AcquireOptions, Options, Service, SlotOptions, UserId, UserLimit } from "../QueueManager.js"
import * as QueueMetrics from "../QueueMetrics.js"
import { validateLimit } from "./config.js"
import { QueueFull, QueueShutdown } from "./errors.js"
import { makeReporter } from "./metrics.js"
import { Scheduler, type Waiter } from "./scheduler.js"
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

/** Suspends until `waiter` is admitted (succeeds) or refused by a shutdown (fails). */
const awaitTurn = (waiter: Waiter) =>
  Effect.async<void, QueueShutdown>((resume) => {
    const wake = (admitted: boolean) =>
      resume(admitted ? Effect.void : Effect.fail(new QueueShutdown({ userId: waiter.userId })))
    if (waiter.state === "waiting") waiter.wake = wake
    else wake(waiter.state === "admitted")
  })

/** Builds the QueueManager service over a fresh in-memory scheduler. */
export const make = (options: Options): Effect.Effect<Service, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    let maxUserQueue = yield* validateLimit("maxUserQueue", options.maxUserQueue)
    const maxTotal = yield* validateLimit("maxTotal", options.maxTotal ?? 0)
    const maxWaitingPerUser = yield* validateLimit("maxWaitingPerUser", options.maxWaitingPerUser ?? 100)
    const userLimit = yield* validateUserLimit(options.userLimit)
    const scheduler = new Scheduler(maxTotal, maxWaitingPerUser)
    const reporter = makeReporter(scheduler)
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

    const release = (userId: UserId) =>
      traced("QueueManager.release", { userId }, (fiber) => {
        const active = scheduler.release(userId)
        report(fiber)
        return active === undefined
          ? debug(fiber, "release ignored: no slot held", { userId })
          : debug(fiber, "slot released", { userId, active })
      })

    /**
     * Takes a slot of `userId` (refusing or waiting as `options` say), then runs `use` with the
     * slot held; `use` must register the release before running `announce`. Uninterruptible
     * except for the wait and what `use` restores.
     */
    const acquire = <A, E, R>(
      name: string,
      userId: UserId,
      options: SlotOptions | undefined,
      use: (restore: Restore, announce: Effect.Effect<void>) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | QueueFull | QueueShutdown, R> =>
      withValidUserId(userId, (id) =>
        Effect.uninterruptibleMask((restore) =>
          traced<A, E | QueueFull | QueueShutdown, R>(name, { userId: id, ...options }, (fiber) => {
            const bypass = options?.bypassUserLimit === true
            const limit = limitUnder(id, maxUserQueue)
            const outcome = scheduler.acquire(id, limit, bypass, options?.onFull === "wait")
            report(fiber)
            switch (outcome._tag) {
              case "Acquired":
                return use(
                  restore,
                  debug(fiber, "slot acquired", { userId: id, active: outcome.active, limit, bypass })
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
                const waiter = outcome.waiter
                return Effect.flatMap(Clock.currentTimeMillis, (since) =>
                  debug(fiber, "slot waiting", { userId: id, waiting: scheduler.waiting, bypass }).pipe(
                    Effect.zipRight(restore(awaitTurn(waiter))),
                    Effect.onExit((exit) =>
                      Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => (scheduler.leave(waiter), report(fiber)))
                    ),
                    Effect.zipRight(
                      use(
                        restore,
                        Effect.flatMap(Clock.currentTimeMillis, (now) =>
                          Effect.zipRight(
                            Metric.update(QueueMetrics.waitTime, (now - since) / 1000),
                            debug(fiber, "slot acquired after waiting", {
                              userId: id,
                              active: scheduler.count(id),
                              limit,
                              bypass,
                              waitedMillis: now - since
                            })
                          )
                        )
                      )
                    )
                  )
                )
              }
            }
          })
        )
      )

    const resize: Service["resize"] = (limits) =>
      Effect.gen(function* () {
        const nextDefault =
          limits.maxUserQueue === undefined ? maxUserQueue : yield* validateLimit("maxUserQueue", limits.maxUserQueue)
        const nextTotal =
          limits.maxTotal === undefined ? scheduler.maxTotal : yield* validateLimit("maxTotal", limits.maxTotal)
        yield* Effect.withFiberRuntime((fiber) => {
          const waitingLimits = new Map<UserId, number>()
          for (const userId of scheduler.waitingUserIds()) waitingLimits.set(userId, limitUnder(userId, nextDefault))
          maxUserQueue = nextDefault
          scheduler.resize(nextTotal, waitingLimits)
          report(fiber)
          return Effect.annotateLogs(Effect.logInfo("QueueManager resized"), { maxUserQueue, maxTotal: nextTotal })
        })
      })

    const shutdown = Effect.withFiberRuntime((fiber) => {
      const first = !scheduler.isShutdown
      scheduler.shutdown()
      report(fiber)
      return first
        ? Effect.annotateLogs(Effect.logInfo("QueueManager shut down"), { inFlight: scheduler.inFlight })
        : Effect.void
    })

    const awaitIdle = Effect.async<void>((resume) => {
      const cancel = scheduler.onIdle(() => resume(Effect.void))
      return Effect.sync(cancel)
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
      activeCount: (userId) => withValidUserId(userId, (id) => Effect.sync(() => scheduler.count(id))),
      activeUsers: Effect.sync(() => HashMap.size(scheduler.counts)),
      tryAcquire: (userId: UserId, options?: AcquireOptions) =>
        acquire("QueueManager.tryAcquire", userId, options, (_restore, announce) => Effect.as(announce, true)).pipe(
          Effect.catchTag("QueueFull", () => Effect.succeed(false))
        ),
      release: (userId) => withValidUserId(userId, release),
      slot: (userId, options) =>
        acquire("QueueManager.slot", userId, options, (_restore, announce) =>
          Effect.zipRight(
            Effect.addFinalizer(() => release(userId)),
            announce
          )
        ),
      withSlot: (userId, options) => (self) =>
        acquire("QueueManager.withSlot", userId, options, (restore, announce) =>
          Effect.ensuring(Effect.zipRight(announce, restore(self)), release(userId))
        ),
      snapshot: Effect.sync(() => scheduler.counts),
      stats: Effect.sync(() => ({
        inFlight: scheduler.inFlight,
        activeUsers: HashMap.size(scheduler.counts),
        waiting: scheduler.waiting,
        waitingUsers: scheduler.waitingUsers,
        acquired: scheduler.acquired,
        refused: { ...scheduler.refused },
        maxUserQueue,
        maxTotal: scheduler.maxTotal,
        maxWaitingPerUser,
        shutdown: scheduler.isShutdown
      })),
      resize,
      shutdown,
      awaitIdle,
      drain: Effect.zipRight(shutdown, awaitIdle)
    } satisfies Service
  })
