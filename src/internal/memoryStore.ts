import { Deferred, Effect, Exit, FiberId, HashMap, Ref } from "effect"
import { QueueShutdown } from "./errors.js"
import * as Model from "./model.js"
import type { Grant, Local, Outcome, Store, StoreConfig, Ticket } from "./store.js"

/** A waiting request of the in-memory store: the model's waiter, and how its caller is told. */
class MemoryTicket implements Ticket {
  end: Exit.Exit<Grant, QueueShutdown> | undefined
  wake: ((end: Exit.Exit<Grant, QueueShutdown>) => void) | undefined
  constructor(readonly waiter: Model.Waiter) {}
  get userId() {
    return this.waiter.userId
  }
  settle(end: Exit.Exit<Grant, QueueShutdown>): void {
    if (this.end !== undefined) return
    this.end = end
    this.wake?.(end)
  }
}

/** The in-memory store, as its model sees it; `outside` counts the slots this process holds elsewhere (the fallback). */
export interface MemoryStore extends Store<never> {
  /** A slot of `userId` held outside was given back: admits whoever can use it. */
  readonly recheck: (userId: Model.Waiter["userId"]) => Effect.Effect<void>
  /** The limits in force, to follow the shared store's. */
  readonly state: () => Model.State
}

/**
 * The in-memory store: a `Ref` of the model's state, each step one `Ref.modify` (atomic with
 * respect to every fiber), after which the requests it admitted or failed are told. What the
 * metrics read synchronously (`local`) is the state the last step left.
 */
export const makeMemoryStore = (config: StoreConfig, outside?: Model.Outside): MemoryStore => {
  let current = Model.empty({ maxUserQueue: config.maxUserQueue, maxTotal: config.maxTotal })
  const ref = Ref.unsafeMake(current)
  const tickets = new Map<number, MemoryTicket>()
  /** Completed when no slot is held any more: one for each stretch of time with slots held. */
  let idle: Deferred.Deferred<void> | undefined

  /** Tells what a step did: admitted and failed requests, and who waits for idleness. */
  const tell = (transition: Model.Transition) => {
    current = transition.state
    for (const [waiter, granted] of transition.admitted) {
      const ticket = tickets.get(waiter.id)!
      tickets.delete(waiter.id)
      ticket.settle(Exit.succeed(granted))
    }
    for (const waiter of transition.failed) {
      const ticket = tickets.get(waiter.id)!
      tickets.delete(waiter.id)
      ticket.settle(Exit.fail(new QueueShutdown({ userId: waiter.userId })))
    }
    if (current.inFlight === 0 && idle !== undefined) {
      Deferred.unsafeDone(idle, Exit.void)
      idle = undefined
    }
    return transition
  }

  /**
   * One step: one `Ref.modify` whose function applies the model and tells what the step did
   * (a woken waiter resumes on its own fiber, after the state is set), returning `f` of it.
   * `event` may throw (a tier function returning garbage): then nothing changes.
   */
  const run = <A>(event: (state: Model.State) => Model.Event, f: (transition: Model.Transition) => A) =>
    Ref.modify(ref, (state) => {
      const transition = tell(Model.step(state, event(state), outside))
      return [f(transition), transition.state]
    })

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

  return {
    acquire: (userId, bypass, wait) =>
      run(
        (state) => {
          const { limit, maxWaiting } = config.tierOf(userId, state.limits.maxUserQueue)
          return { _tag: "Acquire", userId, limit, maxWaiting, bypass, wait }
        },
        (t) => outcomeOf(t.decision!)
      ),
    awaitTurn: (ticket) =>
      Effect.async((resume) => {
        const t = ticket as MemoryTicket
        if (t.end !== undefined) return resume(t.end)
        t.wake = resume
        return Effect.sync(() => (t.wake = undefined))
      }),
    leave: (ticket) =>
      Effect.suspend(() => {
        const t = ticket as MemoryTicket
        // admitted while its caller stopped waiting: the slot goes back
        if (t.end !== undefined) {
          return Exit.isSuccess(t.end) ? run(() => ({ _tag: "Release", userId: t.userId }), done) : Effect.void
        }
        tickets.delete(t.waiter.id)
        return run(() => ({ _tag: "Leave", waiter: t.waiter }), done)
      }),
    release: (userId) =>
      run(
        () => ({ _tag: "Release", userId }),
        (t) => t.left
      ),
    recheck: (userId) => run(() => ({ _tag: "Recheck", userId }), done),
    // this store's own view: the slots held outside are not its to show
    standing: (userId) =>
      Effect.map(Ref.get(ref), (state) => ({
        active: Model.countOf(state, userId),
        waiting: Model.waitingOf(state, userId),
        inFlight: state.inFlight,
        limits: state.limits
      })),
    users: Effect.map(Ref.get(ref), (state) => HashMap.size(state.counts)),
    snapshot: Effect.map(Ref.get(ref), (state) => state.counts),
    totals: Effect.map(Ref.get(ref), (state) => ({
      inFlight: state.inFlight,
      activeUsers: HashMap.size(state.counts),
      waiting: state.waiting,
      waitingUsers: HashMap.size(state.lines),
      acquired: state.acquired,
      refused: state.refused
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
