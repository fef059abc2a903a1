import { Effect, Exit } from "effect"
import type { UserId } from "../../QueueManager.js"
import { QueueShutdown, type RefusalReason, StoreUnavailable } from "../errors.js"
import type { Grant, Lease, Outcome, Released, StoreConfig, Tier } from "../store.js"
import type { Activity } from "./activity.js"
import { CallFailed, unavailable } from "./connection.js"
import { type LeaseRegistry, RedisLease } from "./leases.js"
import type { GiveBacks } from "./renewal.js"
import { encodeUser, type Session, STALE_RETRIES } from "./session.js"
import { RedisTicket, type TicketRegistry } from "./tickets.js"

/** A user's limits computed under the default `dq`. */
interface TierUnder extends Tier {
  readonly dq: number
}

/** An acquisition sent to Redis. */
interface Sent {
  readonly id: string
  readonly userId: UserId
  /** When its call was sent: its lease, if granted, is counted from then. */
  readonly sentAt: number
  readonly raw: boolean
}

/**
 * The slot operations this process sends to Redis, and what their answers do here: an
 * acquisition becomes a lease, a refusal, or a request waiting in its user's line (a ticket);
 * a release goes out with the next batch; whatever could not be given back, or may have been
 * granted to a caller that gave up, goes back with the next renewal round (`GiveBacks`).
 */
export class Operations {
  constructor(
    private readonly session: Session,
    private readonly leases: LeaseRegistry,
    private readonly tickets: TicketRegistry,
    private readonly activity: Activity,
    private readonly giveBacks: GiveBacks,
    private readonly config: StoreConfig
  ) {}

  /**
   * An acquisition, counted as pending until it has its outcome. The limit is computed before
   * anything is counted: a tier function that throws changes nothing.
   */
  acquire(userId: UserId, bypass: boolean, wait: boolean, raw: boolean): Effect.Effect<Outcome, StoreUnavailable> {
    const tier = this.tierNow(userId)
    return this.activity.track(this.sendUntilCurrent(userId, bypass, wait, raw, tier, 0))
  }

  /** `userId`'s limits under the default in force as last heard, with that default (Redis checks it is still the one). */
  private tierNow(userId: UserId): TierUnder {
    const dq = this.session.limits.maxUserQueue
    return { ...this.config.tierOf(userId, dq), dq }
  }

  /**
   * Gives back the slot of `lease`, or without one the last slot `userId` took with `tryAcquire`;
   * `undefined` if there is none (or it was given back already).
   */
  release(userId: UserId, lease: Lease | undefined): Released {
    const target = lease instanceof RedisLease ? lease : this.leases.rawOf(userId)
    return target !== undefined && this.releaseLease(target) ? "sent" : undefined
  }

  /** Forgets `lease` here and gives its slot back; false if it was given back already. */
  releaseLease(lease: RedisLease): boolean {
    if (!this.leases.release(lease)) return false
    this.sendRelease(lease.id)
    return true
  }

  /** Takes `ticket` out of its line; if it was admitted meanwhile, its slot goes back. */
  leave(ticket: RedisTicket): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (ticket.end !== undefined && Exit.isSuccess(ticket.end)) {
        this.releaseLease(ticket.end.value.lease as RedisLease)
        return Effect.void
      }
      this.tickets.fail(ticket, new StoreUnavailable({ operation: "wait", reason: "given up" }))
      return Effect.promise(() =>
        this.session.call("leave", [ticket.id]).then(
          () => undefined,
          () => this.giveBacks.add(ticket.id)
        )
      )
    })
  }

  /** Redis admitted `ticket` with this count and token, as confirmed by a call sent at `renewedAt`. */
  admit(ticket: RedisTicket, active: number, token: number, renewedAt: number): void {
    if (ticket.end !== undefined) return this.sendRelease(ticket.id)
    ticket.settle(this.grant(ticket, ticket.epoch, active, token, renewedAt, "wait"))
  }

  /** Gives back slot `id` with the next batch; if that fails, with the next round's give-backs. */
  private sendRelease(id: string): void {
    this.session.batch(["r", id], (ok) => {
      if (!ok) this.giveBacks.add(id)
    })
  }

  /**
   * The lease of a slot Redis granted, confirmed by a call sent at `renewedAt`; a grant that
   * comes after that lease's deadline (this process could not hear of it: paused) goes back.
   */
  private grant(
    sent: Omit<Sent, "sentAt">,
    epoch: string,
    active: number,
    token: number,
    renewedAt: number,
    operation: string
  ): Exit.Exit<Grant, StoreUnavailable> {
    if (performance.now() >= this.leases.deadline(renewedAt)) {
      this.sendRelease(sent.id)
      return Exit.fail(
        new StoreUnavailable({
          operation,
          reason: `the slot was granted too late to be used: its lease of ${this.leases.leaseMillis} ms could have expired`
        })
      )
    }
    const lease = this.leases.hold(new RedisLease(sent.id, sent.userId, epoch, token, renewedAt, sent.raw))
    this.activity.acquired++
    return Exit.succeed({ active, token, lease })
  }

  /** An acquisition, sent again, computed under the new default, while Redis's default changes under it. */
  private sendUntilCurrent(
    userId: UserId,
    bypass: boolean,
    wait: boolean,
    raw: boolean,
    tier: TierUnder,
    tries: number
  ): Effect.Effect<Outcome, StoreUnavailable> {
    return Effect.flatMap(this.send(userId, bypass, wait, raw, tier), (outcome) => {
      if (outcome !== "stale") return Effect.succeed(outcome)
      if (tries >= STALE_RETRIES) {
        return Effect.fail(new StoreUnavailable({ operation: "acquire", reason: "the default limit kept changing" }))
      }
      return Effect.suspend(() => this.sendUntilCurrent(userId, bypass, wait, raw, this.tierNow(userId), tries + 1))
    })
  }

  /**
   * One acquisition, sent with the others of this turn: its outcome, or `"stale"` when Redis's
   * default limit changed since this process last heard it (the limit depends on it).
   */
  private send(
    userId: UserId,
    bypass: boolean,
    wait: boolean,
    raw: boolean,
    tier: TierUnder
  ): Effect.Effect<Outcome | "stale", StoreUnavailable> {
    return Effect.async((resume) => {
      const sent: Sent = { id: this.session.nextId(userId), userId, sentAt: performance.now(), raw }
      if (wait) this.tickets.expect(sent.id)
      const flags = (bypass ? 1 : 0) + (wait ? 2 : 0)
      const args = ["a", encodeUser(userId), tier.limit, flags, sent.id, tier.dq, tier.maxWaiting]
      this.session.batch(args, (ok, value) => {
        const early = this.tickets.answered(sent.id)
        resume(ok ? this.outcome(sent, value as ReadonlyArray<unknown>, early) : this.failed(sent, value))
      })
    })
  }

  private failed(sent: Sent, error: unknown): Effect.Effect<never, StoreUnavailable> {
    // the call may still run once Redis answers: whatever it did is given back
    if (!(error instanceof CallFailed) || error.reached) this.giveBacks.add(sent.id)
    return Effect.fail(unavailable("acquire")(error))
  }

  /** What an answer to an acquisition means here; `early`: the request's wake-up, if it came first. */
  private outcome(
    sent: Sent,
    answer: ReadonlyArray<unknown>,
    early: readonly [number, number] | undefined
  ): Effect.Effect<Outcome | "stale", StoreUnavailable> {
    const epoch = this.session.epoch!
    switch (answer[0]) {
      case 1:
        return Exit.map(
          this.grant(sent, epoch, Number(answer[1]), Number(answer[2]), sent.sentAt, "acquire"),
          (grant) => ({
            _tag: "Acquired" as const,
            grant
          })
        )
      case 0: {
        const reason = answer[1] as RefusalReason
        this.activity.refused[reason]++
        return Effect.succeed({ _tag: "Refused", reason, active: Number(answer[2]), limit: Number(answer[3]) })
      }
      case 2: {
        const ticket = new RedisTicket(sent.id, sent.userId, epoch, sent.sentAt, sent.raw)
        this.tickets.add(ticket)
        if (early !== undefined) this.tickets.admitted(ticket, early[0], early[1], sent.sentAt)
        else if (this.activity.isShutdown) {
          // sent before the shutdown, answered after: refused as the shutdown refused every waiter
          this.activity.refused.shutdown++
          this.tickets.fail(ticket, new QueueShutdown({ userId: sent.userId }))
        }
        return Effect.succeed({ _tag: "Waiting", ticket })
      }
      default:
        return Effect.succeed("stale")
    }
  }
}
