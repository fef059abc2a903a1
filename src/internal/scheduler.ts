import { HashMap, Option } from "effect"
import type { UserId } from "../QueueManager.js"
import type { RefusalReason } from "./errors.js"
import type { Grant, Limits, Local, Outcome, StoreConfig, Ticket } from "./store.js"

/**
 * Slots held outside the scheduler that its limits must count too: those this process holds
 * in the shared store while the scheduler stands in for it (Redis unreachable).
 */
export interface Outside {
  readonly count: (userId: UserId) => number
  readonly total: () => number
}

/** A request waiting for a slot. `wake` is set once its fiber is suspended on it. */
export class Waiter implements Ticket {
  state: "waiting" | "admitted" | "refused" | "gone" = "waiting"
  wake: ((admitted: boolean) => void) | undefined = undefined
  /** What it was granted, once admitted. */
  grant: Grant | undefined = undefined
  constructor(
    readonly userId: UserId,
    readonly bypass: boolean
  ) {}
}

/** The requests of one user waiting in arrival order, and the per-user limit that holds them back. */
interface Line {
  readonly waiters: Set<Waiter>
  limit: number
}

const first = <A>(set: Set<A>): A => set.values().next().value as A

/**
 * The in-memory state behind the QueueManager policy: slot counts per user (an immutable
 * `HashMap`; an entry exists only while its count is above zero), the global count, and
 * the waiting requests. Every method is one synchronous step, so each is atomic with
 * respect to every fiber.
 *
 * Fairness: a waiter is admitted the moment a slot it can use is free, and the slot is
 * handed to it directly (nobody can take it in between). When `maxTotal` holds several
 * users back, freed capacity goes to them in turn (`ready` is the ring of users whose
 * first waiter only waits for `maxTotal`), first-in first-out within each user.
 */
export class Scheduler implements Local {
  counts = HashMap.empty<UserId, number>()
  inFlight = 0
  waiting = 0
  acquired = 0
  readonly refused: Record<RefusalReason | "shutdown", number> = { user: 0, global: 0, waiting: 0, shutdown: 0 }
  isShutdown = false
  maxUserQueue: number
  maxTotal: number
  /** The last fencing token handed out: each grant gets the next. */
  private token = 0
  private readonly maxWaitingPerUser: number
  private readonly limitOf: StoreConfig["limitOf"]
  private readonly lines = new Map<UserId, Line>()
  private readonly ready = new Set<UserId>()
  private readonly idle = new Set<() => void>()

  constructor(
    config: StoreConfig,
    private readonly outside?: Outside
  ) {
    this.maxUserQueue = config.maxUserQueue
    this.maxTotal = config.maxTotal
    this.maxWaitingPerUser = config.maxWaitingPerUser
    this.limitOf = config.limitOf
  }

  /** Slots `userId` holds here. */
  count(userId: UserId): number {
    const active = HashMap.get(this.counts, userId)
    return Option.isSome(active) ? active.value : 0
  }

  /** Slots `userId` holds, here and outside. */
  private held(userId: UserId): number {
    return this.outside === undefined ? this.count(userId) : this.count(userId) + this.outside.count(userId)
  }

  /** Slots held in all, here and outside. */
  private get total(): number {
    return this.outside === undefined ? this.inFlight : this.inFlight + this.outside.total()
  }

  /** The number of users holding at least one slot. */
  get users(): number {
    return HashMap.size(this.counts)
  }

  /** The number of users with at least one waiting request. */
  get waitingUsers(): number {
    return this.lines.size
  }

  /**
   * Takes a slot if `userId` may have one now (under its limit, 0 = none, and `maxTotal`);
   * otherwise refuses, or with `wait` joins the end of the user's line.
   */
  acquire(userId: UserId, bypass: boolean, wait: boolean): Outcome {
    const limit = this.limitOf(userId, this.maxUserQueue)
    if (this.isShutdown) {
      this.refused.shutdown++
      return { _tag: "Shutdown" }
    }
    const active = this.held(userId)
    const fitsUser = bypass || limit === 0 || active < limit
    const fitsTotal = this.maxTotal === 0 || this.total < this.maxTotal
    const line = this.lines.get(userId)
    if (fitsUser && fitsTotal && (!wait || line === undefined)) {
      return { _tag: "Acquired", grant: this.grant(userId, this.outside === undefined ? active : this.count(userId)) }
    }
    if (!wait) {
      return fitsUser ? this.refuse("global", this.total, this.maxTotal) : this.refuse("user", active, limit)
    }
    const queued = line === undefined ? 0 : line.waiters.size
    if (this.maxWaitingPerUser > 0 && queued >= this.maxWaitingPerUser) {
      return this.refuse("waiting", queued, this.maxWaitingPerUser)
    }
    const waiter = new Waiter(userId, bypass)
    if (line === undefined) {
      this.lines.set(userId, { waiters: new Set([waiter]), limit })
      if (fitsUser) this.ready.add(userId)
    } else {
      line.waiters.add(waiter)
    }
    this.waiting++
    return { _tag: "Waiting", ticket: waiter }
  }

  /** Gives back one slot of `userId` and admits whoever can use it; the count left, or `undefined` if it held none. */
  release(userId: UserId): number | undefined {
    const active = HashMap.get(this.counts, userId)
    if (Option.isNone(active)) return undefined
    const left = active.value - 1
    this.counts = left > 0 ? HashMap.set(this.counts, userId, left) : HashMap.remove(this.counts, userId)
    this.inFlight--
    this.recheck(userId)
    if (this.inFlight === 0) {
      for (const wake of this.idle) wake()
      this.idle.clear()
    }
    return left
  }

  /** A slot of `userId` was given back (here or outside): admits whoever can use it. */
  recheck(userId: UserId): void {
    const line = this.lines.get(userId)
    if (line !== undefined && this.headFits(userId, line)) this.ready.add(userId)
    this.dispatch()
  }

  /**
   * The fiber of `waiter` stopped waiting (interrupted, timed out) without taking its slot:
   * remove it from its line, or give back the slot it was admitted to.
   */
  leave(waiter: Waiter): void {
    const { state, userId } = waiter
    waiter.state = "gone"
    if (state === "admitted") {
      this.release(userId)
    } else if (state === "waiting") {
      const line = this.lines.get(userId)!
      line.waiters.delete(waiter)
      this.waiting--
      if (line.waiters.size === 0) {
        this.lines.delete(userId)
        this.ready.delete(userId)
      } else if (this.headFits(userId, line)) {
        this.ready.add(userId)
        this.dispatch()
      } else {
        this.ready.delete(userId)
      }
    }
  }

  /**
   * Changes the limits and the limits of waiting users (all computed before any changes, so a
   * tier function that throws changes nothing), then admits whoever now fits.
   */
  resize(limits: Limits): void {
    const lineLimits = Array.from(this.lines.keys(), (userId) => this.limitOf(userId, limits.maxUserQueue))
    this.maxUserQueue = limits.maxUserQueue
    this.maxTotal = limits.maxTotal
    let i = 0
    for (const [userId, line] of this.lines) {
      line.limit = lineLimits[i++]!
      if (this.headFits(userId, line)) this.ready.add(userId)
      else this.ready.delete(userId)
    }
    this.dispatch()
  }

  /** Refuses every new acquisition from now on and wakes every waiter with a refusal. */
  shutdown(): void {
    this.isShutdown = true
    for (const line of this.lines.values()) {
      for (const waiter of line.waiters) {
        waiter.state = "refused"
        this.refused.shutdown++
        waiter.wake?.(false)
      }
    }
    this.lines.clear()
    this.ready.clear()
    this.waiting = 0
  }

  /** Calls `wake` once no slot is held (at once if none is); returns a function that cancels it. */
  onIdle(wake: () => void): () => void {
    if (this.inFlight === 0) {
      wake()
      return () => {}
    }
    this.idle.add(wake)
    return () => this.idle.delete(wake)
  }

  /** Takes a slot for `userId`, which holds `held` here. */
  private grant(userId: UserId, held: number): Grant {
    const active = held + 1
    this.counts = HashMap.set(this.counts, userId, active)
    this.inFlight++
    this.acquired++
    return { active, token: ++this.token, lease: undefined }
  }

  private refuse(reason: RefusalReason, active: number, limit: number): Outcome {
    this.refused[reason]++
    return { _tag: "Refused", reason, active, limit }
  }

  private headFits(userId: UserId, line: Line): boolean {
    return first(line.waiters).bypass || line.limit === 0 || this.held(userId) < line.limit
  }

  /** Hands free capacity to the users in `ready`, one slot per turn. */
  private dispatch(): void {
    while (this.ready.size > 0 && (this.maxTotal === 0 || this.total < this.maxTotal)) {
      const userId = first(this.ready)
      this.ready.delete(userId)
      const line = this.lines.get(userId)!
      const waiter = first(line.waiters)
      line.waiters.delete(waiter)
      this.waiting--
      waiter.grant = this.grant(userId, this.count(userId))
      waiter.state = "admitted"
      waiter.wake?.(true)
      if (line.waiters.size === 0) this.lines.delete(userId)
      else if (this.headFits(userId, line)) this.ready.add(userId)
    }
  }
}
