import { Clock, ConfigError, Context, DefaultServices, Effect, Exit, FiberRef, LogLevel, Metric, Tracer } from "effect"
import { Fiber, FiberId, FiberRefs, Option } from "effect"
import type { MetricLabel, Runtime } from "effect"
import type { AcquireOptions, Options, Service, Slot, SlotOptions, UserId } from "../QueueManager.js"
import * as QueueMetrics from "../QueueMetrics.js"
import { validateLimit } from "./config.js"
import { LeaseLost, QueueFull, QueueShutdown, type StoreUnavailable } from "./errors.js"
import type { Scope } from "effect"
import { makeReporter } from "./metrics.js"
import { makeMemoryStore } from "./memoryStore.js"
import * as Model from "./model.js"
import { type Grant, type Lease, type Outcome, QueueStore, type Store, type StoreConfig } from "./store.js"
import { makeTierOf, validateUserLimit } from "./tiers.js"
import { invalidUserId, withValidUserId } from "./userId.js"

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
  Effect.withFiberRuntime((fiber) => {
    if (!tracing(fiber)) return body(fiber)
    // a refusal is the limiter doing its job, not an error: the span ends well, saying why
    const refusalsKept = Effect.catchIf(
      body(fiber),
      (error): error is E & QueueFull => error instanceof QueueFull,
      (refusal) => Effect.as(Effect.annotateCurrentSpan("refused", refusal.reason), new Refused(refusal))
    )
    return Effect.flatMap(
      Effect.withSpan(refusalsKept, name, { attributes, captureStackTrace: false }),
      (result): Effect.Effect<A, E> =>
        result instanceof Refused ? Effect.fail(result.refusal as E) : Effect.succeed(result as A)
    )
  })

/** A refusal carried out of a span as its value, to fail again once the span has ended. */
class Refused {
  constructor(readonly refusal: QueueFull) {}
}

/** Whether `fiber` sends spans somewhere: a tracer other than the built-in one, tracing enabled (`quietIn` reads the same for a runtime). */
const tracing = (fiber: RuntimeFiber) =>
  fiber.currentTracer !== builtInTracer && fiber.getFiberRef(FiberRef.currentTracerEnabled)

/**
 * Whether a fiber started on `runtime` would neither trace nor log at debug level in the
 * manager (what `tracing` and `debug` check in the fiber): then a `Direct` step does all it does.
 */
const quietIn = (runtime: Runtime.Runtime<never>) => {
  const read = <A>(ref: FiberRef.FiberRef<A>) => FiberRefs.getOrDefault(runtime.fiberRefs, ref)
  const tracer = Context.get(read(DefaultServices.currentServices), Tracer.Tracer)
  return (
    (tracer === builtInTracer || !read(FiberRef.currentTracerEnabled)) &&
    LogLevel.greaterThan(read(FiberRef.currentMinimumLogLevel), LogLevel.Debug)
  )
}

/**
 * `withSlot`'s steps without a fiber, for the Promise face over a store that takes its steps
 * synchronously (in memory), for a request that does not wait: the same validation, store
 * steps, refusals and metrics as the fiber's, reported with the runtime's metric labels.
 */
export interface Direct {
  /** Takes a slot of `userId`, or throws what `withSlot` would fail with (a refusal, an invalid id). */
  readonly take: (userId: UserId, bypass: boolean) => Slot
  /** Gives back a slot `take` gave. */
  readonly give: (userId: UserId) => void
}

/** What each manager needs to make its `Direct` steps: its store's synchronous steps and its reporter. */
const directFactories = new WeakMap<Service, (labels: ReadonlyArray<MetricLabel.MetricLabel>) => Direct>()

/**
 * The `Direct` steps of `service` for calls made with `runtime`'s FiberRefs; `undefined` when
 * its store cannot take a step synchronously, or when a fiber there would trace or log at
 * debug level (only the fiber does those).
 */
export const directIn = (service: Service, runtime: Runtime.Runtime<never>): Direct | undefined => {
  const make = directFactories.get(service)
  return make !== undefined && quietIn(runtime)
    ? make(FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMetricLabels))
    : undefined
}

/** The refusal of a request the store refused (or would refuse, for `check`). */
const refusal = (userId: UserId, { active, limit, reason }: Omit<Extract<Outcome, { _tag: "Refused" }>, "_tag">) =>
  new QueueFull({ userId, reason, active, limit })

/** `first` then `second`, skipping `first` when it is `Effect.void` (disabled logs on the hit path). */
const andThen = <A, E, R>(first: Effect.Effect<void>, second: Effect.Effect<A, E, R>) =>
  first === Effect.void ? second : Effect.zipRight(first, second)

/**
 * Logs at debug level, skipping the work (and the annotations) when the fiber's minimum level
 * filters it out. A line or span added to `withSlot` must keep `quietIn` true only where it is
 * skipped: the `Direct` steps do neither.
 */
const debug = (fiber: RuntimeFiber, message: string, annotations: () => Record<string, unknown>) =>
  LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Debug)
    ? Effect.void
    : Effect.annotateLogs(Effect.logDebug(message), annotations())

/** A fiber that must stop when a slot's lease is lost: the one doing the work under that slot. */
interface Holder {
  fiber: RuntimeFiber
  released: boolean
}

/**
 * The holders of the `slot`s taken in a fiber. A slot taken in a fiber that then hands its
 * result to another one (`Effect.timeout`, `Effect.race`, `Fiber.join`: the work goes on in the
 * fiber that joins it) moves with the join: joining happens in the joining fiber, which thereby
 * becomes the holder of every slot whose taker has ended.
 */
const holders = FiberRef.unsafeMake<ReadonlyArray<Holder>>([], {
  join: (parent, child) => {
    const joiner = Fiber.getCurrentFiber()
    const all = new Set([...parent, ...child])
    for (const holder of all) {
      if (holder.released) all.delete(holder)
      else if (Option.isSome(joiner) && holder.fiber !== joiner.value && holder.fiber.unsafePoll() !== null) {
        holder.fiber = joiner.value
      }
    }
    return Array.from(all)
  }
})

/** Until the slot is released, a lost `lease` interrupts the fiber holding the slot (see `holders`). */
const stopHolderOnLoss = (lease: Lease): Effect.Effect<Holder> =>
  Effect.withFiberRuntime((fiber) => {
    const holder: Holder = { fiber, released: false }
    lease.watch(() => holder.fiber.unsafeInterruptAsFork(FiberId.none))
    return Effect.as(
      FiberRef.update(holders, (all) => [...all.filter((other) => !other.released), holder]),
      holder
    )
  })

/**
 * Runs `body` under a slot whose `lease` can be lost, then `release`: the body runs in a child
 * fiber, which a lost lease (or a store closing) interrupts; `withSlot` then fails with
 * `LeaseLost` (even when the body was uninterruptible and finished: it ran without its slot).
 * Interrupting the caller interrupts the body. Called with interruption disabled, so the
 * release is in place before anything can interrupt the body.
 */
const guarded = <A, E, R>(
  restore: Restore,
  body: Effect.Effect<A, E, R>,
  release: Effect.Effect<void>,
  lease: Lease,
  userId: UserId
): Effect.Effect<A, E | LeaseLost, R> =>
  Effect.flatMap(Effect.fork(restore(body)), (child) => {
    lease.watch(() => child.unsafeInterruptAsFork(FiberId.none))
    return restore(Fiber.await(child)).pipe(
      Effect.onInterrupt(() => Fiber.interrupt(child)),
      Effect.ensuring(release),
      Effect.flatMap((exit) =>
        // as Fiber.join: what the body set in FiberRefs stays set after it
        Effect.zipRight(
          Fiber.inheritAll(child),
          lease.isLost() ? Effect.fail(new LeaseLost({ userId })) : (exit as Exit.Exit<A, E | LeaseLost>)
        )
      )
    )
  })

/** Builds a store for a manager's configuration. */
export type MakeStore<E, R> = (config: StoreConfig) => Effect.Effect<Store, E, R>

/** The in-memory store, as a `QueueStore`. */
export const memoryStore = QueueStore.of({ make: (config) => Effect.sync(() => makeMemoryStore(config)) })

/** Builds the QueueManager service over a fresh in-memory store. */
export const make = (options: Options): Effect.Effect<Service, ConfigError.ConfigError> =>
  makeWith(options, (config) => Effect.sync(() => makeMemoryStore(config)))

/** Builds the QueueManager service over the store of the `QueueStore` provided. */
export const makeWithStore = (
  options: Options
): Effect.Effect<Service, ConfigError.ConfigError | StoreUnavailable, QueueStore | Scope.Scope> =>
  Effect.flatMap(QueueStore, (store) => makeWith(options, store.make))

/** Builds the QueueManager service (the policy) over the store `makeStore` builds. */
export const makeWith = <E, R>(
  options: Options,
  makeStore: MakeStore<E, R>
): Effect.Effect<Service, ConfigError.ConfigError | E, R> =>
  Effect.gen(function* () {
    const maxUserQueue = yield* validateLimit("maxUserQueue", options.maxUserQueue)
    const maxTotal = yield* validateLimit("maxTotal", options.maxTotal ?? 0)
    const maxWaitingPerUser = yield* validateLimit("maxWaitingPerUser", options.maxWaitingPerUser ?? 100)
    const userLimit = yield* validateUserLimit(options.userLimit)
    const tierOf = makeTierOf(userLimit, maxWaitingPerUser)

    const store = yield* makeStore({ maxUserQueue, maxTotal, tierOf })
    const reporter = makeReporter(store.local)
    const report = (fiber: RuntimeFiber) => reporter(fiber.getFiberRef(FiberRef.currentMetricLabels))
    const limitFor = (userId: UserId) => tierOf(userId, store.limits().maxUserQueue).limit
    // a resize and a shutdown each take a round trip on a shared store: one at a time
    const reconfiguring = yield* Effect.makeSemaphore(1)

    /** Gives back a slot, reporting and logging with `fiber`'s labels and log level. */
    const releaseIn = (fiber: RuntimeFiber, userId: UserId, grant: Grant | undefined) =>
      LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Debug)
        ? Effect.map(store.release(userId, grant?.lease), () => report(fiber))
        : Effect.flatMap(store.release(userId, grant?.lease), (active) => {
            report(fiber)
            if (active === undefined) return debug(fiber, "release ignored: no slot held", () => ({ userId }))
            return debug(fiber, "slot released", () => (active === "sent" ? { userId } : { userId, active }))
          })

    const release = (userId: UserId, grant: Grant | undefined) =>
      traced("QueueManager.release", { userId }, (fiber) => releaseIn(fiber, userId, grant))

    /** The release of a `withSlot`, in the fiber that took the slot (without a tracer: no step to find it again). */
    const releaseFrom = (fiber: RuntimeFiber, userId: UserId, grant: Grant) =>
      tracing(fiber) ? release(userId, grant) : releaseIn(fiber, userId, grant)

    /**
     * Takes a slot of `userId` (refusing or waiting as `options` say), then runs `use` with the
     * grant; `use` must register the release before running `announce`. Uninterruptible
     * except for the wait and what `use` restores.
     */
    const acquire = <A, E, R>(
      name: string,
      userId: UserId,
      options: SlotOptions | undefined,
      raw: boolean,
      use: (
        restore: Restore,
        announce: Effect.Effect<void>,
        grant: Grant,
        fiber: RuntimeFiber
      ) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | QueueFull | QueueShutdown | StoreUnavailable, R> =>
      withValidUserId(userId, (id) =>
        Effect.uninterruptibleMask((restore) =>
          traced<A, E | QueueFull | QueueShutdown | StoreUnavailable, R>(name, { userId: id, ...options }, (fiber) => {
            const bypass = options?.bypassUserLimit === true
            const wait = options?.onFull === "wait"
            const decide = (
              outcome: Outcome
            ): Effect.Effect<A, E | QueueFull | QueueShutdown | StoreUnavailable, R> => {
              report(fiber)
              switch (outcome._tag) {
                case "Acquired":
                  return use(
                    restore,
                    debug(fiber, "slot acquired", () => ({
                      userId: id,
                      active: outcome.grant.active,
                      limit: limitFor(id),
                      bypass
                    })),
                    outcome.grant,
                    fiber
                  )
                case "Refused": {
                  const { reason, active, limit } = outcome
                  return Effect.zipRight(
                    debug(fiber, "slot refused", () => ({ userId: id, reason, active, limit, bypass })),
                    Effect.fail(refusal(id, outcome))
                  )
                }
                case "Shutdown":
                  return Effect.fail(new QueueShutdown({ userId: id }))
                case "Waiting": {
                  const ticket = outcome.ticket
                  return Effect.flatMap(Clock.currentTimeMillis, (since) =>
                    debug(fiber, "slot waiting", () => ({ userId: id, waiting: store.local.waiting, bypass })).pipe(
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
                              debug(fiber, "slot acquired after waiting", () => ({
                                userId: id,
                                active: grant.active,
                                limit: limitFor(id),
                                bypass,
                                waitedMillis: now - since
                              }))
                            )
                          }),
                          grant,
                          fiber
                        )
                      )
                    )
                  )
                }
              }
            }
            return Effect.flatMap(store.acquire(id, bypass, wait, raw), decide)
          })
        )
      )

    const resize: Service["resize"] = (limits) =>
      reconfiguring.withPermits(1)(
        Effect.gen(function* () {
          const current = store.limits()
          const next = {
            maxUserQueue:
              limits.maxUserQueue === undefined
                ? current.maxUserQueue
                : yield* validateLimit("maxUserQueue", limits.maxUserQueue),
            maxTotal:
              limits.maxTotal === undefined ? current.maxTotal : yield* validateLimit("maxTotal", limits.maxTotal)
          }
          yield* store.resize(next)
          yield* Effect.withFiberRuntime((fiber) => {
            report(fiber)
            return Effect.annotateLogs(Effect.logInfo("QueueManager resized"), next)
          })
        })
      )

    const shutdown = reconfiguring.withPermits(1)(
      Effect.withFiberRuntime((fiber) => {
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
    )

    // debug, like the other lines of the manager: a program's output is its own (the seed logged it as info)
    yield* Effect.annotateLogs(Effect.logDebug("QueueManager ready"), {
      maxUserQueue: store.limits().maxUserQueue,
      maxTotal: store.limits().maxTotal,
      maxWaitingPerUser,
      tiers: userLimit !== undefined
    })

    const slotOf = (userId: UserId, grant: Grant): Slot => ({ userId, token: grant.token })

    const service: Service = {
      get maxUserQueue() {
        return store.limits().maxUserQueue
      },
      limitFor: (userId) => withValidUserId(userId, (id) => Effect.sync(() => limitFor(id))),
      activeCount: (userId) => withValidUserId(userId, (id) => Effect.map(store.standing(id), (s) => s.active)),
      status: (userId) =>
        withValidUserId(userId, (id) =>
          Effect.map(store.standing(id), ({ active, waiting, limits }) => {
            const { limit, maxWaiting } = tierOf(id, limits.maxUserQueue)
            return { active, waiting, limit, maxWaiting }
          })
        ),
      check: (userId, options) =>
        withValidUserId(userId, (id) =>
          Effect.map(store.standing(id), ({ active, waiting, inFlight, limits }) => {
            const verdict = Model.judge(
              { active, waiting, inFlight, maxTotal: limits.maxTotal, shutdown: store.isShutdown() },
              {
                ...tierOf(id, limits.maxUserQueue),
                bypass: options?.bypassUserLimit === true,
                wait: options?.onFull === "wait"
              }
            )
            if (verdict._tag === "Shutdown") return Option.some(new QueueShutdown({ userId: id }))
            return verdict._tag === "Refused" ? Option.some(refusal(id, verdict)) : Option.none()
          })
        ),
      activeUsers: store.users,
      tryAcquire: (userId: UserId, options?: AcquireOptions) =>
        acquire("QueueManager.tryAcquire", userId, options, true, (_restore, announce) =>
          Effect.as(announce, true)
        ).pipe(Effect.catchTag("QueueFull", () => Effect.succeed(false))),
      release: (userId) => withValidUserId(userId, (id) => release(id, undefined)),
      slot: (userId, options) =>
        acquire("QueueManager.slot", userId, options, false, (_restore, announce, grant) => {
          const lease = grant.lease
          const slot = slotOf(userId, grant)
          if (lease === undefined)
            return Effect.as(
              Effect.zipRight(
                Effect.addFinalizer(() => release(userId, grant)),
                announce
              ),
              slot
            )
          return Effect.flatMap(stopHolderOnLoss(lease), (holder) =>
            Effect.as(
              Effect.zipRight(
                Effect.addFinalizer(() =>
                  Effect.zipRight(
                    Effect.sync(() => (holder.released = true)),
                    release(userId, grant)
                  )
                ),
                announce
              ),
              slot
            )
          )
        }),
      withSlot: (userId, options) => (self) =>
        acquire("QueueManager.withSlot", userId, options, false, (restore, announce, grant, fiber) => {
          const body = Effect.isEffect(self) ? self : Effect.suspend(() => self(slotOf(userId, grant)))
          if (grant.lease !== undefined) {
            return guarded(restore, andThen(announce, body), release(userId, grant), grant.lease, userId)
          }
          // as Effect.ensuring, already uninterruptible: the release runs whatever the exit
          const released = releaseFrom(fiber, userId, grant)
          return Effect.matchCauseEffect(andThen(announce, restore(body)), {
            onFailure: (cause) => Effect.zipRight(released, Effect.failCause(cause)),
            onSuccess: (a) => Effect.as(released, a)
          })
        }),
      snapshot: store.snapshot,
      stats: Effect.map(store.totals, (totals) => ({
        ...totals,
        ...store.limits(),
        maxWaitingPerUser,
        shutdown: store.isShutdown()
      })),
      resize,
      shutdown,
      awaitIdle: store.awaitIdle,
      drain: Effect.zipRight(shutdown, store.awaitIdle)
    }

    const steps = store.syncSteps
    if (steps !== undefined) {
      directFactories.set(service, (labels) => ({
        take: (userId, bypass) => {
          const invalid = invalidUserId(userId)
          if (invalid !== undefined) throw invalid
          const outcome = steps.acquire(userId, bypass, false)
          reporter(labels)
          switch (outcome._tag) {
            case "Acquired":
              return slotOf(userId, outcome.grant)
            case "Refused":
              throw refusal(userId, outcome)
            case "Shutdown":
              throw new QueueShutdown({ userId })
            case "Waiting":
              throw new Error("QueueManager: a request that does not wait was queued")
          }
        },
        give: (userId) => {
          steps.release(userId)
          reporter(labels)
        }
      }))
    }
    return service
  })
