/**
 * The scheduling model: every rule of the manager, as one pure transition over an immutable
 * state. The in-memory store holds this state and makes each step one synchronous call;
 * the Redis store's Lua (`redis/store.lua`) obeys the same rules, and a differential test drives
 * both with the same events.
 *
 * The rules, as `step` applies them:
 * - **Limits.** A user holds at most its limit (0: none); all users together at most
 *   `maxTotal` (0: none). A bypass request skips its user's limit, not `maxTotal`, and is
 *   counted like any other.
 * - **Refuse or wait.** A request that does not fit is refused at once, changing nothing but a
 *   counter; with `wait` it joins the end of its user's line instead (at most the user's waiting
 *   bound: its tier's, or `maxWaitingPerUser`; 0: no bound). A waiting request holds nothing.
 *   `judge` says which from where the user stands, and the manager's `check` asks it alone.
 * - **First-in first-out per user.** A newcomer that waits never passes its user's line: it is
 *   granted at once only when nobody of its user waits.
 * - **Hand-off in the same step.** A release (or a resize, a leave) admits, in the same step,
 *   whoever waits and now fits: the slot goes to the waiter, never to a newcomer in between.
 * - **Round-robin across users.** Users whose first waiter fits its user's limit and waits only
 *   for `maxTotal` take turns in a ring: each turn admits one request, and a user with more
 *   waiters goes to the back of the ring.
 * - **Shutdown.** Every new request is refused and every waiter is failed; held slots finish.
 * - **Expiry** (Redis only: a dead process's requests and slots). Expired requests leave their
 *   lines before expired slots are given back, so an expired request is never admitted.
 *
 * Each operation on a line or the ring takes amortized O(1): lines and the ring are persistent
 * queues, and a request that leaves from behind others is only marked gone, and dropped when it
 * reaches the front.
 */
import { HashMap, HashSet } from "effect"
import type { UserId } from "../QueueManager.js"
import type { RefusalReason } from "./errors.js"
import * as Queue from "./queue.js"

/** A request waiting in a line. */
export interface Waiter {
  readonly id: number
  readonly userId: UserId
  readonly bypass: boolean
}

/** The limits in force. */
export interface Limits {
  readonly maxUserQueue: number
  readonly maxTotal: number
}

/** The waiting requests of one user, and the limit that holds them back. */
interface Line {
  readonly limit: number
  /** In arrival order; the first is always still waiting (those that left are dropped from the front). */
  readonly waiters: Queue.Queue<Waiter>
  /** How many still wait. */
  readonly size: number
  /** When the line began: a resize takes lines in this order. */
  readonly since: number
  /** While the user takes a turn in the ring: the turn's number; 0 otherwise. */
  readonly turn: number
}

const line = (limit: number, waiters: Queue.Queue<Waiter>, size: number, since: number, turn: number): Line => ({
  limit,
  waiters,
  size,
  since,
  turn
})

/** The state of every rule. Never mutated: each step makes a new one. */
export interface State {
  readonly limits: Limits
  /** Slots held per user; only users holding at least one. */
  readonly counts: HashMap.HashMap<UserId, number>
  readonly inFlight: number
  readonly lines: HashMap.HashMap<UserId, Line>
  /** Requests that left from behind others, until they reach the front of their line and are dropped. */
  readonly gone: HashSet.HashSet<number>
  readonly waiting: number
  /**
   * The round-robin ring: users taking turns for `maxTotal`, as (user, turn number); an entry
   * whose number is no longer its user's line's `turn` is stale, and skipped.
   */
  readonly turns: Queue.Queue<readonly [UserId, number]>
  /** Entries in `turns`, and how many of them are live: stale ones are swept out when they outnumber the rest. */
  readonly turnEntries: number
  readonly ringSize: number
  readonly shutdown: boolean
  readonly acquired: number
  /** The last fencing token handed out; each grant gets the next. */
  readonly token: number
  readonly refused: Readonly<Record<RefusalReason | "shutdown", number>>
  /** A counter for the ids of requests and the numbers of lines and turns. */
  readonly serial: number
}

/** A slot granted: its user's count after it, and its fencing token. */
export interface Granted {
  readonly active: number
  readonly token: number
}

/**
 * Slots held outside the model that its limits must count too (the in-memory store standing in
 * for Redis counts the slots this process still holds there). Pure reads.
 */
export interface Outside {
  readonly count: (userId: UserId) => number
  readonly total: () => number
}

const nobodyOutside: Outside = { count: () => 0, total: () => 0 }

/** What one request got. */
export type Decision =
  | { readonly _tag: "Acquired"; readonly grant: Granted }
  | { readonly _tag: "Refused"; readonly reason: RefusalReason; readonly active: number; readonly limit: number }
  | { readonly _tag: "Waiting"; readonly waiter: Waiter }
  | { readonly _tag: "Shutdown" }

/** Whether a request fits its user's `limit` (0: none): it bypasses it, or the user holds fewer. */
const fitsLimit = (bypass: boolean, limit: number, active: number): boolean => bypass || limit === 0 || active < limit

/** Whether one more slot fits `maxTotal` (0: none) with `inFlight` held. */
const fitsCap = (inFlight: number, maxTotal: number): boolean => maxTotal === 0 || inFlight < maxTotal

/** What a request asks for: its user's limit and waiting bound (each 0: none), and how it may be served. */
export interface Request {
  /** The user's limit (its tier under the default in force). */
  readonly limit: number
  /** How many requests the user may have waiting (its tier's bound, or `maxWaitingPerUser`). */
  readonly maxWaiting: number
  readonly bypass: boolean
  readonly wait: boolean
}

/** Where a request's user stands when it arrives: all the rules look at. */
export interface Standing {
  /** Slots the user holds. */
  readonly active: number
  /** The user's requests waiting (its line's length). */
  readonly waiting: number
  /** Slots all users hold. */
  readonly inFlight: number
  readonly maxTotal: number
  readonly shutdown: boolean
}

/** What the rules make of a request: granted, refused (and why), waiting (fitting its own limit or not), or shut out. */
export type Verdict =
  | { readonly _tag: "Grant" }
  | { readonly _tag: "Wait"; readonly fitsUser: boolean }
  | { readonly _tag: "Refused"; readonly reason: RefusalReason; readonly active: number; readonly limit: number }
  | { readonly _tag: "Shutdown" }

const shutOut: Verdict = { _tag: "Shutdown" }
const grantIt: Verdict = { _tag: "Grant" }
const waitFitting: Verdict = { _tag: "Wait", fitsUser: true }
const waitHeldBack: Verdict = { _tag: "Wait", fitsUser: false }

/**
 * The rules of one request, given where its user stands: after a shutdown nothing is taken; a
 * request that fits its user's limit (or bypasses it) and `maxTotal` is granted, unless it
 * would wait and its user's line is not empty (a request never passes its line); otherwise it
 * is refused, or with `wait` joins the line while the line is shorter than the waiting bound.
 */
export const judge = (standing: Standing, request: Request): Verdict => {
  if (standing.shutdown) return shutOut
  const { active, waiting, inFlight, maxTotal } = standing
  const fitsUser = fitsLimit(request.bypass, request.limit, active)
  if (fitsUser && fitsCap(inFlight, maxTotal) && (!request.wait || waiting === 0)) return grantIt
  if (!request.wait) {
    return fitsUser
      ? { _tag: "Refused", reason: "global", active: inFlight, limit: maxTotal }
      : { _tag: "Refused", reason: "user", active, limit: request.limit }
  }
  if (request.maxWaiting > 0 && waiting >= request.maxWaiting) {
    return { _tag: "Refused", reason: "waiting", active: waiting, limit: request.maxWaiting }
  }
  return fitsUser ? waitFitting : waitHeldBack
}

/** Everything that can happen to the state. */
export type Event =
  | ({ readonly _tag: "Acquire"; readonly userId: UserId } & Request)
  | { readonly _tag: "Release"; readonly userId: UserId }
  | { readonly _tag: "Leave"; readonly waiter: Waiter }
  | { readonly _tag: "Recheck"; readonly userId: UserId }
  | { readonly _tag: "Resize"; readonly limits: Limits; readonly lineLimit: (userId: UserId) => number }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "Expire"; readonly waiters: ReadonlyArray<Waiter>; readonly slots: ReadonlyArray<UserId> }

/**
 * What a step did: the new state, the decision on a request (`Acquire`), the count left by a
 * release (`undefined`: the user held none), and the requests it admitted or failed (shutdown),
 * which the store must tell.
 */
export interface Transition {
  readonly state: State
  readonly decision: Decision | undefined
  readonly left: number | undefined
  readonly admitted: ReadonlyArray<readonly [Waiter, Granted]>
  readonly failed: ReadonlyArray<Waiter>
}

/** The state of a new manager. */
export const empty = (limits: Limits): State => ({
  limits,
  counts: HashMap.empty(),
  inFlight: 0,
  lines: HashMap.empty(),
  gone: HashSet.empty(),
  waiting: 0,
  turns: Queue.empty,
  turnEntries: 0,
  ringSize: 0,
  shutdown: false,
  acquired: 0,
  token: 0,
  refused: { user: 0, global: 0, waiting: 0, shutdown: 0 },
  serial: 0
})

/** Slots `userId` holds (in the model). */
export const countOf = (state: State, userId: UserId): number => {
  const count = HashMap.get(state.counts, userId)
  return count._tag === "Some" ? count.value : 0
}

/** Requests of `userId` waiting (in the model). */
export const waitingOf = (state: State, userId: UserId): number => {
  const current = HashMap.get(state.lines, userId)
  return current._tag === "Some" ? current.value.size : 0
}

const none: ReadonlyArray<never> = []

/**
 * A step being made: the fields of the state as locals, each replaced (never mutated) as the
 * rules apply, then frozen into the next state. Pure from outside: the state it starts from is
 * left as it was.
 */
class Step {
  limits: Limits
  counts: HashMap.HashMap<UserId, number>
  inFlight: number
  lines: HashMap.HashMap<UserId, Line>
  gone: HashSet.HashSet<number>
  waiting: number
  turns: Queue.Queue<readonly [UserId, number]>
  turnEntries: number
  ringSize: number
  shutdown: boolean
  acquired: number
  token: number
  refused: Readonly<Record<RefusalReason | "shutdown", number>>
  serial: number
  admitted: Array<readonly [Waiter, Granted]> | undefined
  failed: Array<Waiter> | undefined

  constructor(
    state: State,
    private readonly outside: Outside
  ) {
    this.limits = state.limits
    this.counts = state.counts
    this.inFlight = state.inFlight
    this.lines = state.lines
    this.gone = state.gone
    this.waiting = state.waiting
    this.turns = state.turns
    this.turnEntries = state.turnEntries
    this.ringSize = state.ringSize
    this.shutdown = state.shutdown
    this.acquired = state.acquired
    this.token = state.token
    this.refused = state.refused
    this.serial = state.serial
  }

  done(decision?: Decision, left?: number): Transition {
    return {
      state: {
        limits: this.limits,
        counts: this.counts,
        inFlight: this.inFlight,
        lines: this.lines,
        gone: this.gone,
        waiting: this.waiting,
        turns: this.turns,
        turnEntries: this.turnEntries,
        ringSize: this.ringSize,
        shutdown: this.shutdown,
        acquired: this.acquired,
        token: this.token,
        refused: this.refused,
        serial: this.serial
      },
      decision,
      left,
      admitted: this.admitted ?? none,
      failed: this.failed ?? none
    }
  }

  private count(userId: UserId): number {
    const count = HashMap.get(this.counts, userId)
    return count._tag === "Some" ? count.value : 0
  }

  /** Slots `userId` holds, here and outside. */
  private held(userId: UserId): number {
    return this.count(userId) + this.outside.count(userId)
  }

  private fitsTotal(): boolean {
    return fitsCap(this.inFlight + this.outside.total(), this.limits.maxTotal)
  }

  private refuse(reason: RefusalReason | "shutdown"): void {
    this.refused = { ...this.refused, [reason]: this.refused[reason] + 1 }
  }

  private grant(userId: UserId): Granted {
    const active = this.count(userId) + 1
    this.counts = HashMap.set(this.counts, userId, active)
    this.inFlight++
    this.acquired++
    return { active, token: ++this.token }
  }

  private setLine(userId: UserId, next: Line): void {
    this.lines = HashMap.set(this.lines, userId, next)
  }

  // ---- the ring of users taking turns for maxTotal ----

  /** `userId` (with `current`, its line) takes a turn at the back of the ring, unless it has one. */
  private enterRing(userId: UserId, current: Line): void {
    if (current.turn !== 0) return this.setLine(userId, current)
    const turn = ++this.serial
    this.turns = Queue.push(this.turns, [userId, turn] as const)
    this.turnEntries++
    this.ringSize++
    this.setLine(userId, line(current.limit, current.waiters, current.size, current.since, turn))
    if (this.turnEntries > 2 * this.ringSize + 32) this.sweepTurns()
  }

  /** Drops the stale entries of the ring (users that left it and came back, or whose line ended): O(entries), rarely. */
  private sweepTurns(): void {
    const live = Queue.toArray(this.turns).filter(([userId, turn]) => {
      const current = HashMap.get(this.lines, userId)
      return current._tag === "Some" && current.value.turn === turn
    })
    this.turns = live.reduce<Queue.Queue<readonly [UserId, number]>>(Queue.push, Queue.empty)
    this.turnEntries = live.length
  }

  /** `userId` (with `current`, its line) gives up its turn: its entry in the ring goes stale. */
  private leaveRing(userId: UserId, current: Line): void {
    if (current.turn === 0) return this.setLine(userId, current)
    this.ringSize--
    this.setLine(userId, line(current.limit, current.waiters, current.size, current.since, 0))
  }

  /** `userId`'s line ends: its ring entry goes stale, and the requests that left from it are forgotten. */
  private endLine(userId: UserId, current: Line): void {
    if (current.turn !== 0) this.ringSize--
    for (const waiter of Queue.toArray(current.waiters)) this.gone = HashSet.remove(this.gone, waiter.id)
    this.lines = HashMap.remove(this.lines, userId)
  }

  /** The user whose turn it is and its line, taken out of the ring; stale entries are dropped on the way. */
  private takeTurn(): readonly [UserId, Line] | undefined {
    for (let next = Queue.first(this.turns); next !== undefined; next = Queue.first(this.turns)) {
      this.turns = Queue.pop(this.turns)
      this.turnEntries--
      const current = HashMap.get(this.lines, next[0])
      if (current._tag === "Some" && current.value.turn === next[1]) {
        this.ringSize--
        return [next[0], current.value]
      }
    }
    return undefined
  }

  // ---- lines ----

  /** Whether `waiter` still waits: in its line (at or behind the first), and it has not left. */
  private isWaiting(waiter: Waiter): boolean {
    const current = HashMap.get(this.lines, waiter.userId)
    return (
      current._tag === "Some" &&
      waiter.id >= Queue.first(current.value.waiters)!.id &&
      !HashSet.has(this.gone, waiter.id)
    )
  }

  /** `waiters` without the requests at its front that left (they are forgotten as they go). */
  private withoutGoneFront(waiters: Queue.Queue<Waiter>): Queue.Queue<Waiter> {
    for (
      let head = Queue.first(waiters);
      head !== undefined && HashSet.has(this.gone, head.id);
      head = Queue.first(waiters)
    ) {
      this.gone = HashSet.remove(this.gone, head.id)
      waiters = Queue.pop(waiters)
    }
    return waiters
  }

  /** Whether the first waiter of `userId`'s line `current` fits its user's own limit. */
  private headFits(userId: UserId, current: Line): boolean {
    return fitsLimit(Queue.first(current.waiters)!.bypass, current.limit, this.held(userId))
  }

  /** `userId`'s line is now `current`: the user takes a turn exactly while its first waiter fits. */
  private refresh(userId: UserId, current: Line): void {
    if (this.headFits(userId, current)) this.enterRing(userId, current)
    else this.leaveRing(userId, current)
  }

  /** After `userId`'s count fell (here or outside): it takes a turn if its first waiter now fits. */
  recheck(userId: UserId): void {
    const current = HashMap.get(this.lines, userId)
    if (current._tag === "Some" && this.headFits(userId, current.value)) this.enterRing(userId, current.value)
  }

  /** Hands free capacity to the users in the ring, one slot per turn. */
  dispatch(): void {
    while (this.fitsTotal()) {
      const turn = this.takeTurn()
      if (turn === undefined) return
      const [userId, current] = turn
      const waiter = Queue.first(current.waiters)!
      this.waiting--
      ;(this.admitted ??= []).push([waiter, this.grant(userId)])
      if (current.size === 1) {
        // out of the ring already (its turn was taken)
        this.endLine(userId, line(current.limit, current.waiters, current.size, current.since, 0))
        continue
      }
      // out of the ring now (its turn was taken); back at its end if its next waiter fits
      const rest = line(
        current.limit,
        this.withoutGoneFront(Queue.pop(current.waiters)),
        current.size - 1,
        current.since,
        0
      )
      this.refresh(userId, rest)
    }
  }

  acquire(userId: UserId, request: Request): Decision {
    const current = HashMap.get(this.lines, userId)
    const verdict = judge(
      {
        active: this.held(userId),
        waiting: current._tag === "Some" ? current.value.size : 0,
        inFlight: this.inFlight + this.outside.total(),
        maxTotal: this.limits.maxTotal,
        shutdown: this.shutdown
      },
      request
    )
    switch (verdict._tag) {
      case "Shutdown":
        this.refuse("shutdown")
        return verdict
      case "Refused":
        this.refuse(verdict.reason)
        return verdict
      case "Grant":
        return { _tag: "Acquired", grant: this.grant(userId) }
    }
    const waiter: Waiter = { id: ++this.serial, userId, bypass: request.bypass }
    this.waiting++
    if (current._tag === "None") {
      const first = line(request.limit, Queue.push(Queue.empty, waiter), 1, waiter.id, 0)
      // it waits only for maxTotal when it fits its own limit
      if (verdict.fitsUser) this.enterRing(userId, first)
      else this.setLine(userId, first)
    } else {
      // behind others: nothing about the line's first waiter changes
      const { limit: lineLimit, waiters, size, since, turn } = current.value
      this.setLine(userId, line(lineLimit, Queue.push(waiters, waiter), size + 1, since, turn))
    }
    return { _tag: "Waiting", waiter }
  }

  /** Gives back one slot of `userId`; the count left, or `undefined` if it held none. */
  release(userId: UserId): number | undefined {
    const count = HashMap.get(this.counts, userId)
    if (count._tag === "None") return undefined
    const left = count.value - 1
    this.counts = left > 0 ? HashMap.set(this.counts, userId, left) : HashMap.remove(this.counts, userId)
    this.inFlight--
    this.recheck(userId)
    return left
  }

  /** A waiting request gives up (nothing happens if it no longer waits). */
  leave(waiter: Waiter): void {
    if (!this.isWaiting(waiter)) return
    this.waiting--
    const current = HashMap.unsafeGet(this.lines, waiter.userId)
    if (current.size === 1) return this.endLine(waiter.userId, current)
    // a waiter behind others is dropped when it reaches the front; the first one goes now
    const first = Queue.first(current.waiters)!.id === waiter.id
    if (!first) this.gone = HashSet.add(this.gone, waiter.id)
    const waiters = first ? this.withoutGoneFront(Queue.pop(current.waiters)) : current.waiters
    this.refresh(waiter.userId, line(current.limit, waiters, current.size - 1, current.since, current.turn))
  }

  resize(limits: Limits, lineLimit: (userId: UserId) => number): void {
    // every limit is computed before anything changes: a tier function that throws changes nothing
    const lines = Array.from(this.lines).sort(([, a], [, b]) => a.since - b.since)
    const limitsOfLines = lines.map(([userId]) => lineLimit(userId))
    this.limits = limits
    lines.forEach(([userId, current], i) => {
      this.refresh(userId, line(limitsOfLines[i]!, current.waiters, current.size, current.since, current.turn))
    })
  }

  shutDown(): void {
    this.shutdown = true
    const lines = Array.from(this.lines).sort(([, a], [, b]) => a.since - b.since)
    for (const [, current] of lines) {
      for (const waiter of Queue.toArray(current.waiters)) {
        if (HashSet.has(this.gone, waiter.id)) continue
        this.refuse("shutdown")
        ;(this.failed ??= []).push(waiter)
      }
    }
    this.lines = HashMap.empty()
    this.gone = HashSet.empty()
    this.waiting = 0
    this.turns = Queue.empty
    this.turnEntries = 0
    this.ringSize = 0
  }
}

/** Applies `event` to `state`; `outside` counts slots held outside the model (none by default). */
export const step = (state: State, event: Event, outside: Outside = nobodyOutside): Transition => {
  // the common case, with nobody waiting: the same rules, without the machinery of lines
  if (HashMap.isEmpty(state.lines) && outside === nobodyOutside) {
    if (event._tag === "Release") return releaseWhileNobodyWaits(state, event.userId)
    if (event._tag === "Acquire" && !state.shutdown) {
      const active = countOf(state, event.userId)
      const { maxTotal } = state.limits
      if (fitsLimit(event.bypass, event.limit, active) && fitsCap(state.inFlight, maxTotal)) {
        return grantWhileNobodyWaits(state, event.userId, active)
      }
    }
  }
  const next = new Step(state, outside)
  switch (event._tag) {
    case "Acquire":
      return next.done(next.acquire(event.userId, event))
    case "Release": {
      const left = next.release(event.userId)
      next.dispatch()
      return next.done(undefined, left)
    }
    case "Leave":
      next.leave(event.waiter)
      next.dispatch()
      return next.done()
    case "Recheck":
      next.recheck(event.userId)
      next.dispatch()
      return next.done()
    case "Resize":
      next.resize(event.limits, event.lineLimit)
      next.dispatch()
      return next.done()
    case "Shutdown":
      next.shutDown()
      return next.done()
    case "Expire":
      // expired requests leave first, so that the slots given back next admit none of them
      for (const waiter of event.waiters) next.leave(waiter)
      for (const userId of event.slots) next.release(userId)
      next.dispatch()
      return next.done()
  }
}

/** `state` with other counts: every field written out, so that each state has the same shape (fast to read). */
const withCounts = (
  state: State,
  counts: HashMap.HashMap<UserId, number>,
  inFlight: number,
  acquired: number,
  token: number
): State => ({
  limits: state.limits,
  counts,
  inFlight,
  lines: state.lines,
  gone: state.gone,
  waiting: state.waiting,
  turns: state.turns,
  turnEntries: state.turnEntries,
  ringSize: state.ringSize,
  shutdown: state.shutdown,
  acquired,
  token,
  refused: state.refused,
  serial: state.serial
})

/** A grant to `userId`, which holds `active`, while nobody waits (so no line can be passed). */
const grantWhileNobodyWaits = (state: State, userId: UserId, active: number): Transition => {
  const grant = { active: active + 1, token: state.token + 1 }
  return {
    state: withCounts(
      state,
      HashMap.set(state.counts, userId, grant.active),
      state.inFlight + 1,
      state.acquired + 1,
      grant.token
    ),
    decision: { _tag: "Acquired", grant },
    left: undefined,
    admitted: none,
    failed: none
  }
}

/** A release while nobody waits (so nobody is admitted). */
const releaseWhileNobodyWaits = (state: State, userId: UserId): Transition => {
  const count = countOf(state, userId)
  if (count === 0) return { state, decision: undefined, left: undefined, admitted: none, failed: none }
  const left = count - 1
  const counts = left > 0 ? HashMap.set(state.counts, userId, left) : HashMap.remove(state.counts, userId)
  return {
    state: withCounts(state, counts, state.inFlight - 1, state.acquired, state.token),
    decision: undefined,
    left,
    admitted: none,
    failed: none
  }
}
