import { Cause, Deferred, Effect, Exit, FiberId, HashMap } from "effect"
import { QueueShutdown } from "./errors.js"
import * as Model from "./model.js"
import type { Grant, Local, Outcome, Store, StoreConfig, SyncSteps, Ticket } from "./store.js"

/** A waiting request of the in-memory store: the model's waiter, how it ended, and how its caller is told. */
class MemoryTicket implements Ticket {
  end: Exit.Exit<Grant, QueueShutdown> | undefined
  wake: ((end: Exit.Exit<Grant, QueueShutdown>) => void) | undefined
  constructor(readonly waiter: Model.Waiter) {}
  get userId() {
    return this.waiter.userId
  }
}

const nobody: ReadonlyArray<MemoryTicket> = []

/** The in-memory store, as its model sees it; `outside` counts the slots this process holds elsewhere (the fallback). */
export interface MemoryStore extends Store<never> {
  /** Its `acquire` and `release` as synchronous calls (it has no `raw` slots and no leases). */
  readonly syncSteps: SyncSteps
  /** A slot of `userId` held outside was given back: admits whoever can use it. */
  readonly recheck: (userId: Model.Waiter["userId"]) => Effect.Effect<void>
  /** The limits in force, to follow the shared store's. */
  readonly state: () => Model.State
}

/**
 * The in-memory store: the model's state, each step one synchronous call (nothing else runs
 * in between), after which the requests it admitted or failed are told. What the metrics read
 * synchronously (`local`) is the state the last step left.
 */
export const makeMemoryStore = (config: StoreConfig, outside?: Model.Outside): MemoryStore => {
  let current = Model.empty({ maxUserQueue: config.maxUserQueue, maxTotal: config.maxTotal })
  const tickets = new Map<number, MemoryTicket>()
  /** Completed when no slot is held any more: one for each stretch of time with slots held. */
  let idle: Deferred.Deferred<void> | undefined

  /** The ticket of `waiter`, out of the waiting ones, with how it ended. */
  const endTicket = (waiter: Model.Waiter, exit: Exit.Exit<Grant, QueueShutdown>) => {
    const ticket = tickets.get(waiter.id)!
    tickets.delete(waiter.id)
    ticket.end = exit
    return ticket
  }

  /**
   * Tells what a step did, its state already set: admitted and failed requests, and who waits
   * for idleness. Every ticket gets its end, and idleness its new waiting point, before anyone
   * is told: a fiber told may run at once (on a scheduler that runs tasks at once) and take
   * steps of its own, stop waiting (its ticket has ended: what it was granted goes back), or
   * wait for idleness again.
   */
  const tell = (transition: Model.Transition) => {
    // most steps (a slot taken or given back with nobody waiting) tell no request
    const told =
      transition.admitted.length + transition.failed.length === 0
        ? nobody
        : [
            ...transition.admitted.map(([waiter, granted]) => endTicket(waiter, Exit.succeed(granted))),
            ...transition.failed.map((waiter) =>
              endTicket(waiter, Exit.fail(new QueueShutdown({ userId: waiter.userId })))
            )
          ]
    const idleNow = current.inFlight === 0 ? idle : undefined
    if (idleNow !== undefined) idle = undefined
    for (const ticket of told) ticket.wake?.(ticket.end!)
    if (idleNow !== undefined) Deferred.unsafeDone(idleNow, Exit.void)
  }

  /** Whether the model is taking a step: the tier function, called inside one, may not start another. */
  let stepping = false

  /**
   * One step: applies the model, sets the state, takes `f` of the transition (a waiting
   * request's ticket exists before anyone is told), then tells what the step did. `event` may
   * throw (a tier function returning garbage): then nothing changes. A step started from
   * inside the model's (a tier function calling the manager) throws: the outer step would
   * overwrite what it did.
   */
  const apply = <A>(event: (state: Model.State) => Model.Event, f: (transition: Model.Transition) => A): A => {
    if (stepping) {
      throw new Cause.IllegalArgumentException(
        "QueueManager: the manager was called from inside one of its own steps (a userLimit function must not call it)"
      )
    }
    stepping = true
    let transition: Model.Transition
    try {
      transition = Model.step(current, event(current), outside)
    } finally {
      stepping = false
    }
    current = transition.state
    const result = f(transition)
    tell(transition)
    return result
  }

  /** `apply` as an effect. */
  const run = <A>(event: (state: Model.State) => Model.Event, f: (transition: Model.Transition) => A) =>
    Effect.sync(() => apply(event, f))

  const done = () => undefined
  const outcomeOf = (decision: Model.Decision): Outcome => {
    switch (decision._tag) {
      case "Waiting": {
        const ticket = new MemoryTicket(decision.waiter)
        tickets.set(decision.waiter.id, ticket)
        return { _tag: "Waiting", ticket }
      }
      default:
        return decision
    }
  }

  const local: Local = {
    get inFlight() {
      return current.inFlight
    },
    get users() {
      return HashMap.size(current.counts)
    },
    get waiting() {
      return current.waiting
    },
    get acquired() {
      return current.acquired
    },
    get refused() {
      return current.refused
    }
  }

  const syncSteps: SyncSteps = {
    acquire: (userId, bypass, wait) =>
      apply(
        (state) => {
          const { limit, maxWaiting } = config.tierOf(userId, state.limits.maxUserQueue)
          return { _tag: "Acquire", userId, limit, maxWaiting, bypass, wait }
        },
        (t) => outcomeOf(t.decision!)
      ),
    release: (userId) =>
      apply(
        () => ({ _tag: "Release", userId }),
        (t) => t.left
      )
  }

  return {
    syncSteps,
    acquire: (userId, bypass, wait) => Effect.sync(() => syncSteps.acquire(userId, bypass, wait)),
    awaitTurn: (ticket) =>
      Effect.async((resume) => {
        const t = ticket as MemoryTicket
        if (t.end !== undefined) return resume(t.end)
        t.wake = resume
        return Effect.sync(() => (t.wake = undefined))
      }),
    // one synchronous call: a step admitting the request in between would find its ticket gone
    leave: (ticket) =>
      Effect.sync(() => {
        const t = ticket as MemoryTicket
        // admitted while its caller stopped waiting: the slot goes back
        if (t.end !== undefined) {
          if (Exit.isSuccess(t.end)) apply(() => ({ _tag: "Release", userId: t.userId }), done)
          return
        }
        tickets.delete(t.waiter.id)
        apply(() => ({ _tag: "Leave", waiter: t.waiter }), done)
      }),
    release: (userId) => Effect.sync(() => syncSteps.release(userId)),
    recheck: (userId) => run(() => ({ _tag: "Recheck", userId }), done),
    // this store's own view: the slots held outside are not its to show
    standing: (userId) =>
      Effect.sync(() => ({
        active: Model.countOf(current, userId),
        waiting: Model.waitingOf(current, userId),
        inFlight: current.inFlight,
        limits: current.limits
      })),
    users: Effect.sync(() => HashMap.size(current.counts)),
    snapshot: Effect.sync(() => current.counts),
    totals: Effect.sync(() => ({
      inFlight: current.inFlight,
      activeUsers: HashMap.size(current.counts),
      waiting: current.waiting,
      waitingUsers: HashMap.size(current.lines),
      acquired: current.acquired,
      refused: current.refused
    })),
    limits: () => current.limits,
    resize: (limits) =>
      run(
        () => ({ _tag: "Resize", limits, lineLimit: (userId) => config.tierOf(userId, limits.maxUserQueue).limit }),
        done
      ),
    shutdown: run(() => ({ _tag: "Shutdown" }), done),
    isShutdown: () => current.shutdown,
    awaitIdle: Effect.suspend(() =>
      current.inFlight === 0 ? Effect.void : Deferred.await((idle ??= Deferred.unsafeMake(FiberId.none)))
    ),
    local,
    state: () => current
  }
}
