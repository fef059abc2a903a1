import { Duration, Effect, Exit } from "effect"
import type { UserId } from "../../QueueManager.js"
import { type QueueShutdown, StoreUnavailable } from "../errors.js"
import type { Grant, Ticket } from "../store.js"
import { type Connection, isNoPermission, messageOf, unavailable } from "./connection.js"
import { makeWatchdog } from "./watchdog.js"

/** The ACL channel pattern of the store's wake-up channels, of which `channel` is one. */
const channelsOf = (channel: string) => `the channels &${channel.slice(0, channel.lastIndexOf(":") + 1)}*`

type TicketEnd = Exit.Exit<Grant, QueueShutdown | StoreUnavailable>

/**
 * A request of this process waiting in Redis, until it ends: admitted (with its grant) or
 * failed. (A `Deferred` would do, but costs more to make than the rest of a wait.)
 */
export class RedisTicket implements Ticket {
  /** How it ended, once it has. */
  end: TicketEnd | undefined
  /** Resumes its waiter, while one waits. */
  private wake: ((end: TicketEnd) => void) | undefined
  constructor(
    readonly id: string,
    readonly userId: UserId,
    readonly epoch: string,
    /** When the call that queued or last renewed it was sent: Redis keeps it a lease time after. */
    public renewedAt: number,
    readonly raw: boolean
  ) {}
  /** Waits for it to end. */
  awaitEnd(): Effect.Effect<Grant, QueueShutdown | StoreUnavailable> {
    return Effect.async((resume) => {
      if (this.end !== undefined) return resume(this.end)
      this.wake = resume
      return Effect.sync(() => (this.wake = undefined))
    })
  }
  /** Ends it as `end`, unless it has ended already. */
  settle(end: TicketEnd): void {
    if (this.end !== undefined) return
    this.end = end
    this.wake?.(end)
  }
}

/** What admitting a ticket needs: its count and token, and when the call that confirmed it was sent. */
export type Admit = (ticket: RedisTicket, active: number, token: number, renewedAt: number) => void

/**
 * This process's waiting requests, and their wake-ups (published by Redis when one is admitted).
 * A wake-up can overtake the reply that queued its request (they come on two connections): it
 * is kept until that reply comes. A request Redis could have dropped (not renewed for a lease
 * time, by the same deadline as leases) is given up, its waiter failed.
 */
export class TicketRegistry {
  readonly waiting = new Map<string, RedisTicket>()
  /** Wait-mode acquisitions sent and not answered yet, and wake-ups that came before their answer. */
  private readonly asking = new Set<string>()
  private readonly early = new Map<string, readonly [number, number]>()
  private readonly watchdog = makeWatchdog((now) => this.expire(now))

  constructor(
    private readonly deadline: (renewedAt: number) => number,
    private readonly admit: Admit,
    /** A ticket given up here that Redis may still hold: to be taken out of its line. */
    private readonly giveUp: (ticket: RedisTicket) => void
  ) {}

  /** A wait-mode acquisition `id` is on its way. */
  expect(id: string): void {
    this.asking.add(id)
  }

  /** The acquisition `id` was answered (or failed): its early wake-up, if any. */
  answered(id: string): readonly [number, number] | undefined {
    this.asking.delete(id)
    const early = this.early.get(id)
    this.early.delete(id)
    return early
  }

  add(ticket: RedisTicket): void {
    this.waiting.set(ticket.id, ticket)
    this.watchdog.arm(this.deadline(ticket.renewedAt))
  }

  /** Redis admitted request `id` (a wake-up). */
  woken(id: string, active: number, token: number): void {
    const ticket = this.waiting.get(id)
    if (ticket !== undefined) this.admitted(ticket, active, token, ticket.renewedAt)
    else if (this.asking.has(id)) this.early.set(id, [active, token])
    // otherwise its waiter gave up: the leave it sent gives the slot back
  }

  /** `ticket`, still waiting here, was admitted; Redis last confirmed it at `renewedAt`. */
  admitted(ticket: RedisTicket, active: number, token: number, renewedAt: number): void {
    if (this.waiting.delete(ticket.id)) this.admit(ticket, active, token, renewedAt)
  }

  /** Fails `ticket` (it stops waiting here). */
  fail(ticket: RedisTicket, error: QueueShutdown | StoreUnavailable): void {
    if (this.waiting.delete(ticket.id)) ticket.settle(Exit.fail(error))
  }

  /** Fails every waiting ticket with the error `errorOf` gives it, or only those of another state than `epoch`. */
  failAll(errorOf: (ticket: RedisTicket) => QueueShutdown | StoreUnavailable, epoch?: string): void {
    for (const ticket of this.waiting.values()) if (ticket.epoch !== epoch) this.fail(ticket, errorOf(ticket))
  }

  /**
   * Hears on `channel` the admissions Redis publishes (`active token id`), until `subscriber`
   * closes; then publishes an empty message there through `db`, the connection the scripts run
   * on, so that an ACL user who may subscribe but not publish is told now, not at a hand-off.
   */
  listen(subscriber: Connection, db: Connection, channel: string): Effect.Effect<void, StoreUnavailable> {
    return Effect.suspend(() => {
      subscriber.redis.on("message", (_channel: string, message: string) => {
        if (message === "") return // the probe sent at start
        const first = message.indexOf(" ")
        const second = message.indexOf(" ", first + 1)
        this.woken(message.slice(second + 1), Number(message.slice(0, first)), Number(message.slice(first + 1, second)))
      })
      const refused = (command: "SUBSCRIBE" | "PUBLISH") => (error: unknown) =>
        isNoPermission(error)
          ? new StoreUnavailable({
              operation: command.toLowerCase(),
              reason:
                `the ACL user may not ${command} to ${channel}, where Redis wakes this process's waiting requests ` +
                `(onFull: "wait"): grant it +subscribe +publish and ${channelsOf(channel)}`,
              cause: error
            })
          : unavailable(command.toLowerCase())(error)
      return Effect.zipRight(
        Effect.tryPromise({
          try: () => subscriber.within(subscriber.redis.subscribe(channel)),
          catch: refused("SUBSCRIBE")
        }),
        Effect.tryPromise({ try: () => db.within(db.redis.publish(channel, "")), catch: refused("PUBLISH") })
      )
    })
  }

  /**
   * Subscribes `subscriber` to `channel` again, after a reconnection (ioredis's own resubscribe is
   * off: see `connect`). Refused (an ACL changed since the start), it logs a warning: the waiters
   * of this process then hear of their slots only at their renewal rounds, until it reconnects.
   */
  resubscribe(subscriber: Connection, channel: string): Effect.Effect<void> {
    return Effect.catchAll(
      Effect.tryPromise(() => subscriber.within(subscriber.redis.subscribe(channel))),
      ({ error }) =>
        Effect.logWarning(
          `Redis refused to subscribe this process to its wake-ups again (${messageOf(error)}): its waiters hear ` +
            `of their slots only at their renewal rounds, up to a third of a lease late; grant the ACL user ` +
            `+subscribe and ${channelsOf(channel)}`
        )
    )
  }

  stop(): void {
    this.watchdog.stop()
  }

  private expire(now: number): number | undefined {
    let next: number | undefined
    for (const ticket of this.waiting.values()) {
      const deadline = this.deadline(ticket.renewedAt)
      if (deadline <= now) {
        this.fail(
          ticket,
          new StoreUnavailable({
            operation: "wait",
            reason: "Redis did not confirm the waiting request for a lease time: it was given up"
          })
        )
        this.giveUp(ticket)
      } else if (next === undefined || deadline < next) next = deadline
    }
    return next
  }
}

/**
 * Every `everyMillis`, asks whether Redis still lets this process PUBLISH to `channel` (an ACL
 * changed since the start probe), and logs when that changes: a warning when it starts refusing,
 * an info line when it accepts again. The store's calls wake other processes' waiters by
 * PUBLISH, and Redis drops a refused wake-up without failing the call (see `store.lua`), so
 * those waiters hear of their slots only at their renewal rounds: this is how operators learn of it.
 */
export const watchWakeups = (db: Connection, channel: string, everyMillis: number): Effect.Effect<never> => {
  let refused = false
  /** Whether Redis refused, and why; `undefined` when it did not answer (nothing learnt). */
  const probe = Effect.promise(() =>
    db.within(db.redis.publish(channel, "")).then(
      () => ({ refused: false, why: "" }),
      (error: unknown) => (isNoPermission(error) ? { refused: true, why: messageOf(error) } : undefined)
    )
  )
  const check = Effect.flatMap(probe, (answer) => {
    if (answer === undefined || answer.refused === refused) return Effect.void
    refused = answer.refused
    return refused
      ? Effect.logWarning(
          `Redis refuses this process's wake-ups (${answer.why}): the waiters it hands slots to hear of them ` +
            `only at their renewal rounds, up to a third of a lease late: grant the ACL user +publish and ${channelsOf(channel)}`
        )
      : Effect.logInfo("Redis accepts this process's wake-ups again")
  })
  return Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(everyMillis)), check))
}
