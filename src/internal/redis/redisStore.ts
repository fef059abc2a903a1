import { Duration, Effect, Exit, FiberSet, HashMap, Schedule } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import type { RedisOptions } from "ioredis"
import type { UserId } from "../../QueueManager.js"
import { QueueShutdown, type RefusalReason, StoreUnavailable } from "../errors.js"
import type { Grant, Lease, Local, Outcome, Released, Store, Ticket, Totals } from "../store.js"
import { makeBatcher } from "./batcher.js"
import { type Connection, connect, liveClock, sleepLive, unavailable } from "./connection.js"

/** How the Redis store is reached and how long a lease lives. */
export interface RedisStoreSettings {
  readonly redis: string | RedisOptions
  readonly prefix: string
  readonly leaseMillis: number
  readonly timeoutMillis: number
}

/** How many leases and tickets one renewal round trip carries at most. */
const RENEW_BATCH = 1000

/** How many acquisitions and releases one round trip carries at most. */
const OPS_BATCH = 32

const encode = (userId: UserId) => (typeof userId === "number" ? `n${userId}` : `s${userId}`)
const decode = (key: string): UserId => (key[0] === "n" ? Number(key.slice(1)) : key.slice(1))

const pairs = (flat: ReadonlyArray<string>) => {
  const out: Array<[string, number]> = []
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, Number(flat[i + 1])])
  return out
}

/** A slot held in Redis, renewed until released; its watchers are told if it expires first. */
class RedisLease implements Lease {
  /** Who is told if it is lost; dropped when it is released. */
  watchers: Array<() => void> | undefined
  isLost = false
  constructor(
    readonly id: string,
    readonly userId: UserId,
    /** When the call that took or last renewed it was sent (this process's clock): Redis expires it a lease later, or after. */
    public renewedAt: number
  ) {}
  watch(onLost: () => void) {
    if (this.isLost) onLost()
    else (this.watchers ??= []).push(onLost)
  }
}

type TicketEnd = Exit.Exit<Grant, QueueShutdown | StoreUnavailable>

/**
 * A request waiting in Redis, until it ends: admitted (with its grant) or refused. (A
 * `Deferred` would do, but costs more to make than the rest of a wait together.)
 */
class RedisTicket implements Ticket {
  /** How it ended, once it has. */
  end: TicketEnd | undefined
  /** Resumes its waiter, while one waits. */
  wake: ((end: TicketEnd) => void) | undefined
  constructor(
    readonly id: string,
    readonly userId: UserId,
    /** As for a lease: when the call that queued or last renewed it was sent. */
    public renewedAt: number
  ) {}
  /** Ends it as `end`, unless it has ended already. */
  settle(end: TicketEnd) {
    if (this.end !== undefined) return
    this.end = end
    this.wake?.(end)
  }
}

/**
 * The Redis store: counts, leases, waiting lines and the global cap live in Redis and are
 * changed only by the scripts in `scripts.ts`; this process keeps its own leases and tickets,
 * renews them, and is woken through pub/sub when one of its tickets is admitted.
 */
export const makeRedisStore = (
  settings: RedisStoreSettings,
  maxTotal: number,
  maxWaitingPerUser: number
): Effect.Effect<Store, StoreUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    const { leaseMillis, timeoutMillis } = settings
    const prefix = `{${settings.prefix}}`
    const db: Connection = yield* connect(settings.redis, timeoutMillis, "connect")
    const subscriber: Connection = yield* connect(settings.redis, timeoutMillis, "subscribe")
    // 64 hex digits: every lease id is then longer than Redis's default zset-max-listpack-value
    // (64 bytes), so the lease set is a skiplist from its first lease, whose insert takes log n
    // steps where a listpack's scans every lease (2 µs per grant with 64 leases held)
    const processId = randomBytes(32).toString("hex")
    const channel = `${prefix}:wake:${processId}`
    let sequence = 0
    /** A lease or ticket id: unique, and ending with its user, so that Redis can tell whose it is. */
    const nextId = (user: string) => `${processId}:${(sequence++).toString(36)}:${user}`
    /** The (encoded) user a lease or ticket id ends with. */
    const userOfId = (id: string | number) => {
      const text = String(id)
      return text.slice(text.indexOf(":", text.indexOf(":") + 1) + 1)
    }

    /** Turns Redis's bare WRONGTYPE error into one naming the key (looking at `users`' lines too). */
    const nameWrongType = (users: ReadonlyArray<string | number>) => async (error: unknown) => {
      if (!String(error).includes("WRONGTYPE")) throw error
      const found = await db.run("inspect", [prefix, ...users])
      throw found === "" ? error : new Error(String(found))
    }

    /** maxTotal as this process last set it: Redis's is written back from it if Redis lost it. */
    let cap = maxTotal

    // acquisitions and releases asked for within one turn of the event loop go out as one call
    const batcher = makeBatcher((args) => {
      /** The user of each operation (`a, user, limit, flags, id` or `r, id`), to name a key of the wrong type. */
      const users = () => {
        const out: Array<string | number> = []
        for (let i = 0; i < args.length; i += args[i] === "a" ? 5 : 2) {
          out.push(args[i] === "a" ? args[i + 1]! : userOfId(args[i + 1]!))
        }
        return out
      }
      const failed = (answer: unknown) => Array.isArray(answer) && answer[0] === "!"
      return db.run("batch", [prefix, leaseMillis, channel, cap, maxWaitingPerUser, ...args]).then(
        // answers are settled in the order they come, before a later call's: no extra turn unless one failed
        (answers) =>
          !Array.isArray(answers) || !answers.some(failed)
            ? answers
            : // an operation that failed alone ({'!', error}) gets its error, naming the key if it can
              Promise.all(
                answers.map((answer, i) =>
                  failed(answer)
                    ? nameWrongType([users()[i]!])(new Error(String(answer[1]))).catch((error: unknown) => error)
                    : answer
                )
              ),
        (error: unknown) => nameWrongType(users())(error)
      )
    }, OPS_BATCH)
    yield* Effect.addFinalizer(() => Effect.sync(batcher.flush))

    /** One acquisition or release, sent with the others of this turn. */
    const batched = <A>(operation: string, args: ReadonlyArray<string | number>) =>
      Effect.async<A, StoreUnavailable>((resume) =>
        batcher.add(args, (ok, value) =>
          resume(ok ? Effect.succeed(value as A) : Effect.fail(unavailable(operation)(value)))
        )
      )

    /**
     * Any other script: sent after the batched operations asked for before it, so it sees their
     * effect. `users`: whose lines it may touch, to be looked at if a key has the wrong type.
     */
    const call = <A>(
      operation: string,
      script: Exclude<Parameters<Connection["run"]>[0], "batch">,
      args: ReadonlyArray<string | number>,
      users: ReadonlyArray<string | number> = []
    ) =>
      Effect.tryPromise({
        try: () => {
          batcher.flush()
          return db.run(script, [prefix, ...args]).catch(nameWrongType(users)) as Promise<A>
        },
        catch: unavailable(operation)
      })

    // this process's part, for the metrics, awaitIdle and shutdown
    const leases = new Map<UserId, Array<RedisLease>>()
    const tickets = new Map<string, RedisTicket>()
    const idle = new Set<() => void>()
    const refused: Record<RefusalReason | "shutdown", number> = { user: 0, global: 0, waiting: 0, shutdown: 0 }
    const local = { inFlight: 0, users: 0, waiting: 0, acquired: 0, refused } satisfies Local
    let isShutdown = false

    const forget = (lease: RedisLease) => {
      const held = leases.get(lease.userId)
      const at = held === undefined ? -1 : held.indexOf(lease)
      if (at < 0) return false
      held!.splice(at, 1)
      if (held!.length === 0) leases.delete(lease.userId)
      lease.watchers = undefined
      local.inFlight--
      local.users = leases.size
      if (local.inFlight === 0) {
        for (const wake of idle) wake()
        idle.clear()
      }
      return true
    }

    const hold = (id: string, userId: UserId, active: number, renewedAt: number): Grant => {
      const lease = new RedisLease(id, userId, renewedAt)
      const held = leases.get(userId)
      if (held === undefined) leases.set(userId, [lease])
      else held.push(lease)
      local.inFlight++
      local.acquired++
      local.users = leases.size
      return { active, lease }
    }

    /** Forgets a lease Redis no longer has, and tells its watchers. */
    const lost = (lease: RedisLease) =>
      Effect.suspend(() => {
        const watchers = lease.watchers
        if (!forget(lease)) return Effect.void
        lease.isLost = true
        watchers?.forEach((onLost) => onLost())
        return Effect.annotateLogs(Effect.logWarning("slot lost: its lease expired before it was renewed"), {
          userId: lease.userId
        })
      })

    const admitted = (ticket: RedisTicket, active: number) => {
      if (!tickets.delete(ticket.id)) return
      local.waiting = tickets.size
      // Redis granted it after the ticket's last renewal was sent: counting from then errs on the safe side
      const grant = hold(ticket.id, ticket.userId, active, ticket.renewedAt)
      if (ticket.end === undefined) ticket.settle(Exit.succeed(grant))
      // its waiter was already told it ended (a shutdown) and will not take the slot: give it back
      else release(grant.lease as RedisLease)
    }

    /** Asks Redis where `ticket` stands, and delivers it if it was admitted. */
    const check = (ticket: RedisTicket) =>
      Effect.flatMap(call<ReadonlyArray<number>>("status", "status", [ticket.id], [userOfId(ticket.id)]), (answer) =>
        Effect.sync(() => {
          if (answer[0] === 1) admitted(ticket, answer[1]!)
          else if (answer[0] === 0 && tickets.delete(ticket.id)) {
            local.waiting = tickets.size
            ticket.settle(
              Exit.fail(new StoreUnavailable({ operation: "wait", reason: "the waiting request expired in Redis" }))
            )
          }
        })
      )

    /** Gives up a ticket while Redis does not answer: its waiter fails, and it leaves its line once Redis does. */
    const expire = (ticket: RedisTicket) =>
      Effect.suspend(() => {
        if (!tickets.delete(ticket.id)) return Effect.void
        local.waiting = tickets.size
        const error = new StoreUnavailable({
          operation: "wait",
          reason: `Redis did not answer for a lease time (${leaseMillis} ms): the waiting request was given up`
        })
        ticket.settle(Exit.fail(error))
        return retryInBackground("leave", call("leave", "leave", [ticket.id], [userOfId(ticket.id)]), error)
      })

    /**
     * Whether an entry last renewed at `renewedAt` may expire in Redis before the next round
     * can renew it or find it gone (a third of a lease, plus a call's timeout, from now).
     */
    const doomed = (renewedAt: number) => renewedAt + leaseMillis <= Date.now() + leaseMillis / 3 + timeoutMillis

    /**
     * Renews, in one round trip per `RENEW_BATCH`, every lease and ticket of this process.
     * An entry Redis no longer has is settled: a lease is lost, a ticket is checked (it was
     * admitted and its wake-up missed, or it expired; checked in the background, so that the
     * next batches are not held up). While Redis does not answer, an entry that may expire
     * before the next round is given up now, so that no holder outlives its lease.
     */
    const renewAll = Effect.suspend(() => {
      const entries: Array<RedisLease | RedisTicket> = Array.from(tickets.values())
      for (const held of leases.values()) for (const lease of held) entries.push(lease)
      const batches: Array<Array<RedisLease | RedisTicket>> = []
      for (let i = 0; i < entries.length; i += RENEW_BATCH) batches.push(entries.slice(i, i + RENEW_BATCH))
      return Effect.forEach(batches, (batch) => {
        const sentAt = Date.now()
        const ids = batch.map((entry) => entry.id)
        return Effect.flatMap(
          Effect.either(call<ReadonlyArray<number>>("renew", "renew", [leaseMillis, ...ids])),
          (answer) => {
            const toCheck: Array<RedisTicket> = []
            const settled = Effect.forEach(batch, (entry, i) => {
              const state = answer._tag === "Right" ? answer.right[i] : undefined
              if (state === 2 || (state === 1 && entry instanceof RedisLease)) {
                entry.renewedAt = sentAt
                return Effect.void
              }
              if (state === undefined) {
                if (!doomed(entry.renewedAt)) return Effect.void
                return entry instanceof RedisLease ? lost(entry) : expire(entry)
              }
              if (entry instanceof RedisLease) return lost(entry)
              toCheck.push(entry)
              return Effect.void
            })
            return Effect.zipRight(
              settled,
              toCheck.length === 0
                ? Effect.void
                : Effect.forkDaemon(
                    Effect.forEach(toCheck, (ticket) => Effect.ignore(check(ticket)), {
                      concurrency: "unbounded",
                      discard: true
                    })
                  )
            )
          }
        )
      })
    })
    yield* Effect.forkScoped(
      Effect.interruptible(
        Effect.forever(
          Effect.zipRight(
            sleepLive(leaseMillis / 3),
            Effect.catchAllCause(renewAll, (cause) => Effect.logError("lease renewal failed", cause))
          )
        )
      )
    )

    // a wake-up can overtake the reply that queued its ticket (they travel on two connections);
    // one for a request no longer asked about (given up, or failed) is dropped: its leave undoes it
    const asking = new Set<string>()
    const early = new Map<string, number>()
    subscriber.redis.on("message", (_channel: string, message: string) => {
      const [id, active] = message.split(" ") as [string, string]
      const ticket = tickets.get(id)
      if (ticket !== undefined) admitted(ticket, Number(active))
      else if (asking.has(id)) early.set(id, Number(active))
    })
    // after a reconnection a wake-up may have been missed: ask about every waiting ticket
    subscriber.redis.on("ready", () => {
      for (const ticket of tickets.values()) Effect.runFork(Effect.ignore(check(ticket)))
    })
    yield* Effect.tryPromise({
      try: () => subscriber.within(subscriber.redis.subscribe(channel)),
      catch: unavailable("subscribe")
    })
    yield* call("configure", "configure", [maxTotal])

    // runs retries with this layer's logger and services; closing the layer stops them
    const runInBackground = yield* FiberSet.makeRuntime<never>()

    /**
     * Retries `undo` (a release or a leave) in the background until Redis answers, for at most
     * a lease time (after it the lease or ticket has expired anyway), or until the layer is
     * closed. Both are no-ops the second time, so a retry never double-counts.
     */
    const retryInBackground = (
      operation: string,
      undo: Effect.Effect<unknown, StoreUnavailable>,
      error: StoreUnavailable
    ) =>
      Effect.zipRight(
        Effect.sync(() =>
          runInBackground(
            undo.pipe(
              Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(Duration.millis(leaseMillis)))),
              Effect.ignore,
              Effect.withClock(liveClock)
            )
          )
        ),
        Effect.logWarning(`${operation} deferred until Redis answers: ${error.message}`)
      )

    /**
     * Gives `lease` back without waiting for Redis: the release goes out with this turn's batch,
     * ahead of every later call of this process; if it fails, it is retried in the background.
     */
    const release = (lease: RedisLease): Released => {
      if (!forget(lease)) return undefined
      const args = ["r", lease.id]
      batcher.add(args, (ok, value) => {
        if (ok) return
        runInBackground(retryInBackground("release", batched("release", args), unavailable("release")(value)))
      })
      return "sent"
    }

    const store: Store = {
      acquire: (userId, limit, bypass, wait) =>
        // one asynchronous step: the answer is turned into the outcome as it arrives
        Effect.async<Outcome, StoreUnavailable>((resume) => {
          if (isShutdown) {
            refused.shutdown++
            return resume(Effect.succeed({ _tag: "Shutdown" }))
          }
          const user = encode(userId)
          const id = nextId(user)
          const sentAt = Date.now()
          const outcome = (answer: number | ReadonlyArray<number | string>): Outcome => {
            if (typeof answer === "number") return { _tag: "Acquired", grant: hold(id, userId, answer, sentAt) }
            if (answer[0] === 0) {
              const reason = answer[1] as RefusalReason
              refused[reason]++
              return { _tag: "Refused", reason, active: Number(answer[2]), limit: Number(answer[3]) }
            }
            const ticket = new RedisTicket(id, userId, sentAt)
            tickets.set(id, ticket)
            local.waiting = tickets.size
            const active = early.get(id)
            if (active !== undefined) {
              early.delete(id)
              admitted(ticket, active)
            }
            return { _tag: "Waiting", ticket }
          }
          if (wait) asking.add(id)
          batcher.add(["a", user, limit, (bypass ? 1 : 0) + (wait ? 2 : 0), id], (ok, value) => {
            asking.delete(id)
            if (ok) return resume(Effect.succeed(outcome(value as number | ReadonlyArray<number | string>)))
            // the script may still run once Redis answers (a pause, a late reply): undo whatever it did
            early.delete(id)
            const error = unavailable("acquire")(value)
            resume(
              Effect.zipRight(
                retryInBackground("leave", call("leave", "leave", [id], [user]), error),
                Effect.fail(error)
              )
            )
          })
        }),
      awaitTurn: (ticket) =>
        Effect.async<Grant, QueueShutdown | StoreUnavailable>((resume) => {
          const t = ticket as RedisTicket
          if (t.end !== undefined) return resume(t.end)
          t.wake = resume
          return Effect.sync(() => (t.wake = undefined))
        }),
      leave: (ticket) =>
        Effect.suspend(() => {
          const t = ticket as RedisTicket
          if (tickets.delete(t.id)) {
            local.waiting = tickets.size
            return Effect.ignore(call("leave", "leave", [t.id], [userOfId(t.id)]))
          }
          // admitted while it stopped waiting: give the slot back
          return Effect.sync(() => {
            if (t.end !== undefined && Exit.isSuccess(t.end)) release(t.end.value.lease as RedisLease)
          })
        }),
      release: (userId, lease) => {
        if (lease instanceof RedisLease) return release(lease)
        const held = leases.get(userId)
        return held === undefined ? undefined : release(held[held.length - 1]!)
      },
      count: (userId) => Effect.map(call<number>("count", "read", [encode(userId)]), Number),
      users: Effect.map(
        call<ReadonlyArray<unknown>>("users", "read", [""]),
        (answer) => (answer[0] as Array<string>).length / 2
      ),
      snapshot: Effect.map(call<ReadonlyArray<unknown>>("snapshot", "read", [""]), (answer) =>
        HashMap.fromIterable(pairs(answer[0] as Array<string>).map(([user, n]) => [decode(user), n] as const))
      ),
      totals: Effect.map(call<ReadonlyArray<unknown>>("stats", "read", [""]), (answer): Totals => {
        const [acquired, user, global, waiting] = (answer[4] as Array<string | null>).map(Number)
        return {
          inFlight: Number(answer[1]),
          activeUsers: (answer[0] as Array<string>).length / 2,
          waiting: Number(answer[2]),
          waitingUsers: Number(answer[3]),
          acquired: acquired!,
          refused: { user: user!, global: global!, waiting: waiting!, shutdown: refused.shutdown }
        }
      }),
      maxTotal: () => cap,
      resize: (maxTotal, limitOf) =>
        Effect.suspend(() => {
          const waiting = Array.from(new Set(Array.from(tickets.values(), (t) => t.userId)))
          const users = waiting.map(encode)
          const args = waiting.flatMap((userId, i) => [users[i]!, limitOf(userId)])
          return Effect.as(call("resize", "configure", [maxTotal, ...args], users), undefined)
        }).pipe(Effect.tap(() => (cap = maxTotal))),
      shutdown: Effect.sync(() => {
        isShutdown = true
        for (const ticket of tickets.values()) {
          refused.shutdown++
          ticket.settle(Exit.fail(new QueueShutdown({ userId: ticket.userId })))
        }
      }),
      isShutdown: () => isShutdown,
      awaitIdle: Effect.async<void>((resume) => {
        if (local.inFlight === 0) return resume(Effect.void)
        const wake = () => resume(Effect.void)
        idle.add(wake)
        return Effect.sync(() => idle.delete(wake))
      }),
      local
    }
    return store
  })
