import type { UserId } from "../../QueueManager.js"
import type { Lease } from "../store.js"
import { makeWatchdog } from "./watchdog.js"

/**
 * A slot this process holds in Redis. Redis expires it `leaseMillis` after the call that took
 * or last renewed it ran, which is after `renewedAt`, the moment (this process's monotonic
 * clock) that call was sent.
 */
export class RedisLease implements Lease {
  /** Redis may no longer have it: it is not renewed any more, and its holder was told. */
  lost = false
  released = false
  /** Who is told when the holder must stop; `undefined` once they were told. */
  private watchers: Array<() => void> | undefined = []
  constructor(
    readonly id: string,
    readonly userId: UserId,
    /** The state of Redis it was granted in (see `epoch` in store.lua). */
    readonly epoch: string,
    readonly token: number,
    public renewedAt: number,
    /** Taken by `tryAcquire`: only a `release` without a lease gives it back. */
    readonly raw: boolean
  ) {}
  watch(onLost: () => void): void {
    if (this.watchers === undefined) onLost()
    else this.watchers.push(onLost)
  }
  isLost(): boolean {
    return this.lost
  }
  /** Tells the watchers, once, that the holder must stop. */
  stop(): void {
    const watchers = this.watchers
    this.watchers = undefined
    watchers?.forEach((onLost) => onLost())
  }
  /** The holder is done: nobody is told anything any more. */
  forget(): void {
    this.watchers = []
  }
}

/**
 * This process's leases, from the grant until the holder releases them (a lost lease is still
 * counted until then: its holder may still be running). A lease is lost when Redis says it no
 * longer has it, when Redis lost its state, or when it could have expired in Redis: its
 * deadline, `margin` before `leaseMillis` after `renewedAt`, passed without a confirmed
 * renewal. The holder is then told at once, by a timer, whatever the renewals are doing.
 */
export class LeaseRegistry {
  /** Leases not yet released, lost ones included. */
  readonly leases = new Set<RedisLease>()
  private readonly perUser = new Map<UserId, number>()
  private readonly raw = new Map<UserId, Array<RedisLease>>()
  private readonly watchdog = makeWatchdog((now) => this.expire(now))
  /**
   * How long before Redis could expire a lease its holder is stopped: the time to stop every
   * holder and let it report. A sixth of a lease: one renewal round may still fail without
   * losing anything while leaseTime > 6 × timeout (the round after it, two thirds of a lease
   * after the last confirmed one, is answered before five sixths).
   */
  readonly margin: number
  /** The store is closing: every holder is stopped, those granted from now on at once. */
  private revoked = false

  constructor(
    readonly leaseMillis: number,
    private readonly onLost: (lost: ReadonlyArray<RedisLease>, why: string) => void,
    private readonly onChange: () => void
  ) {
    this.margin = leaseMillis / 6
  }

  /** The last moment a lease renewed (sent) at `renewedAt` may be used. */
  deadline(renewedAt: number): number {
    return renewedAt + this.leaseMillis - this.margin
  }

  /** Registers a lease Redis granted. */
  hold(lease: RedisLease): RedisLease {
    this.leases.add(lease)
    this.perUser.set(lease.userId, (this.perUser.get(lease.userId) ?? 0) + 1)
    if (lease.raw) {
      const stack = this.raw.get(lease.userId)
      if (stack === undefined) this.raw.set(lease.userId, [lease])
      else stack.push(lease)
    }
    this.watchdog.arm(this.deadline(lease.renewedAt))
    if (this.revoked) lease.stop()
    return lease
  }

  /** The holder is done with `lease`: forgets it; false if it was released already. */
  release(lease: RedisLease): boolean {
    if (lease.released) return false
    lease.released = true
    lease.forget()
    this.leases.delete(lease)
    const left = this.perUser.get(lease.userId)! - 1
    if (left === 0) this.perUser.delete(lease.userId)
    else this.perUser.set(lease.userId, left)
    if (lease.raw) {
      const stack = this.raw.get(lease.userId)!
      stack.splice(stack.indexOf(lease), 1)
      if (stack.length === 0) this.raw.delete(lease.userId)
    }
    this.onChange()
    return true
  }

  /** The most recent lease of `userId` taken by `tryAcquire` and not yet released. */
  rawOf(userId: UserId): RedisLease | undefined {
    const stack = this.raw.get(userId)
    return stack?.[stack.length - 1]
  }

  /** Whether a lease not taken by `tryAcquire` is still held (its holder has not stopped). */
  get hasHolders(): boolean {
    let raw = 0
    for (const stack of this.raw.values()) raw += stack.length
    return this.leases.size > raw
  }

  /** Leases of `userId` not yet released. */
  count(userId: UserId): number {
    return this.perUser.get(userId) ?? 0
  }

  get users(): number {
    return this.perUser.size
  }

  /** These leases may no longer be in Redis: they are not renewed any more, and their holders are stopped. */
  lose(leases: Iterable<RedisLease>, why: string): void {
    const lost: Array<RedisLease> = []
    for (const lease of leases) {
      if (lease.lost || lease.released) continue
      lease.lost = true
      lost.push(lease)
    }
    for (const lease of lost) lease.stop()
    if (lost.length > 0) this.onLost(lost, why)
  }

  /** Redis lost its state: every lease granted before is gone. */
  loseAllBut(epoch: string): void {
    const lost = Array.from(this.leases).filter((lease) => lease.epoch !== epoch)
    this.lose(lost, "Redis lost its state (a restart without persistence, a flush)")
  }

  /** The store is closing: every holder is told to stop (its lease is renewed until it has). */
  revokeAll(): void {
    this.revoked = true
    for (const lease of this.leases) lease.stop()
  }

  /** Redis confirmed `lease` at a call sent at `sentAt`. */
  renewed(lease: RedisLease, sentAt: number): void {
    if (!lease.lost && sentAt > lease.renewedAt) lease.renewedAt = sentAt
  }

  /** The leases to renew: those not lost (a released one is gone already). */
  renewable(): Array<RedisLease> {
    const out: Array<RedisLease> = []
    for (const lease of this.leases) if (!lease.lost) out.push(lease)
    return out
  }

  stop(): void {
    this.watchdog.stop()
  }

  private expire(now: number): number | undefined {
    let next: number | undefined
    const due: Array<RedisLease> = []
    for (const lease of this.leases) {
      if (lease.lost) continue
      const deadline = this.deadline(lease.renewedAt)
      if (deadline <= now) due.push(lease)
      else if (next === undefined || deadline < next) next = deadline
    }
    this.lose(due, "its lease could have expired before Redis confirmed a renewal")
    return next
  }
}
