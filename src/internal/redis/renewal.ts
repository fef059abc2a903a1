import { Effect } from "effect"
import type { Alarm } from "./alarm.js"
import { StoreUnavailable } from "../errors.js"
import type { LeaseRegistry, RedisLease } from "./leases.js"
import type { RedisTicket, TicketRegistry } from "./tickets.js"

/** How many ids one renewal or give-back call carries at most. */
const CHUNK = 1000

/** Runs a call of the store and resolves with its answer (after the epoch and limits it begins with). */
export type Call = (script: "renew" | "leave", args: ReadonlyArray<string | number>) => Promise<ReadonlyArray<unknown>>

/**
 * Ids Redis may still hold for this process though nobody here uses them any more: a release
 * that failed, an acquisition whose caller gave up when it timed out (Redis may run it later), a
 * request given up while Redis did not answer. They are given back together, at the next
 * renewal round (one call per thousand), not retried one by one; an id not given back within a
 * lease time is dropped (nobody renews it, so Redis has let it expire).
 */
export class GiveBacks {
  private readonly since = new Map<string, number>()
  private added = false
  constructor(private readonly leaseMillis: number) {}
  add(id: string): void {
    if (!this.since.has(id)) this.since.set(id, performance.now())
    this.added = true
  }
  /** Whether ids were added since the last time this was asked. */
  takeAdded(): boolean {
    const added = this.added
    this.added = false
    return added
  }
  get size(): number {
    return this.since.size
  }
  /** Sends every id; an id is kept until a call carrying it is answered, or for a lease time. */
  async flush(call: Call): Promise<void> {
    const ids = Array.from(this.since.keys())
    await Promise.all(
      chunks(ids).map((chunk) =>
        call("leave", chunk).then(
          () => chunk.forEach((id) => this.since.delete(id)),
          () => {
            const now = performance.now()
            for (const id of chunk) if (now - this.since.get(id)! >= this.leaseMillis) this.since.delete(id)
          }
        )
      )
    )
  }
}

const chunks = <A>(all: ReadonlyArray<A>): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < all.length; i += CHUNK) out.push(all.slice(i, i + CHUNK))
  return out
}

/**
 * One renewal round: gives back what is pending and renews every lease and waiting request of
 * this process, a thousand per call, all calls at once. What Redis no longer has is settled:
 * a lease is lost; a request it admitted is delivered (its wake-up was missed); a request it
 * dropped fails its waiter. A call that fails changes nothing here: each lease and request
 * has its own deadline, which the registries watch.
 */
export const renewAll = (call: Call, leases: LeaseRegistry, tickets: TicketRegistry, giveBacks: GiveBacks) =>
  Effect.promise(async () => {
    const givenBack = giveBacks.size > 0 ? giveBacks.flush(call) : undefined
    const held = leases.renewable()
    const waiting = Array.from(tickets.waiting.values())
    const batches: Array<{ readonly held: ReadonlyArray<RedisLease>; readonly waiting: ReadonlyArray<RedisTicket> }> =
      []
    for (let i = 0; i < held.length + waiting.length; i += CHUNK) {
      batches.push({
        held: held.slice(i, i + CHUNK),
        waiting: waiting.slice(Math.max(0, i - held.length), Math.max(0, i + CHUNK - held.length))
      })
    }
    await Promise.all([
      givenBack,
      ...batches.map(async (batch) => {
        const sentAt = performance.now()
        const ids = [...batch.held.map((lease) => lease.id), ...batch.waiting.map((ticket) => ticket.id)]
        const answers = await call("renew", [batch.held.length, ...ids]).catch(() => undefined)
        if (answers === undefined) return
        const gone = batch.held.filter((lease, i) => {
          if (answers[i] !== 1) return true
          leases.renewed(lease, sentAt)
          return false
        })
        leases.lose(gone, "Redis no longer has its lease")
        batch.waiting.forEach((ticket, i) => {
          const answer = answers[batch.held.length + i]
          if (answer === 2) ticket.renewedAt = Math.max(ticket.renewedAt, sentAt)
          else if (Array.isArray(answer)) tickets.admitted(ticket, Number(answer[1]), Number(answer[2]), sentAt)
          else
            tickets.fail(
              ticket,
              new StoreUnavailable({ operation: "wait", reason: "the waiting request expired in Redis" })
            )
        })
      })
    ])
  })

/**
 * The renewal rounds, until interrupted: one every third of a lease, however long the last one
 * took (at most a timeout), and one at once whenever `alarm` rings.
 */
export const renewEvery = (
  call: Call,
  leases: LeaseRegistry,
  tickets: TicketRegistry,
  giveBacks: GiveBacks,
  alarm: Alarm
): Effect.Effect<never> =>
  Effect.forever(
    Effect.suspend(() => {
      const started = performance.now()
      return Effect.zipRight(
        renewAll(call, leases, tickets, giveBacks),
        Effect.suspend(() => alarm.sleep(leases.leaseMillis / 3 - (performance.now() - started)))
      )
    })
  )
