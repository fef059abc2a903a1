import { Duration, Effect, Exit, FiberSet, HashMap } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import type { RedisOptions } from "ioredis"
import type { UserId } from "../../QueueManager.js"
import { QueueShutdown, type RefusalReason, StoreUnavailable } from "../errors.js"
import type { SharedStore } from "../fallbackStore.js"
import type { Limits, Local, Outcome, Released, StoreConfig, Ticket, Totals } from "../store.js"
import { makeBatcher } from "./batcher.js"
import { CallFailed, type Connection, connect, unavailable } from "./connection.js"
import { LeaseRegistry, RedisLease } from "./leases.js"
import { keysOf, type Script } from "./lua.js"
import { type Call, GiveBacks, renewAll } from "./renewal.js"
import { RedisTicket, TicketRegistry } from "./tickets.js"

/** How the Redis store is reached and how long a lease lives. */
export interface RedisStoreSettings {
  readonly redis: string | RedisOptions
  readonly prefix: string
  readonly leaseMillis: number
  readonly timeoutMillis: number
}

/** How many acquisitions and releases one round trip carries at most. */
const OPS_BATCH = 32

/** How often an acquisition is sent again because the default limit changed meanwhile. */
const STALE_RETRIES = 5

const encode = (userId: UserId) => (typeof userId === "number" ? `n${userId}` : `s${userId}`)
const decode = (key: string): UserId => (key[0] === "n" ? Number(key.slice(1)) : key.slice(1))

const pairs = (flat: ReadonlyArray<string>) => {
  const out: Array<readonly [UserId, number]> = []
  for (let i = 0; i < flat.length; i += 2) out.push([decode(flat[i]!), Number(flat[i + 1])])
  return out
}

/**
 * A sleep of real time that `wake` cuts short (or, when called between sleeps, makes the next
 * one end at once): the renewal rounds' clock, which a reconnection rings.
 */
const makeAlarm = () => {
  let rung = false
  let ring = () => {
    rung = true
  }
  const sleep = (millis: number) =>
    Effect.async<void>((resume) => {
      if (rung || millis <= 0) {
        rung = false
        return resume(Effect.void)
      }
      const timer = setTimeout(done, millis)
      function done() {
        clearTimeout(timer)
        ring = () => (rung = true)
        resume(Effect.void)
      }
      ring = done
      return Effect.sync(() => clearTimeout(timer))
    })
  return { sleep, wake: () => ring() }
}

/**
 * The Redis store: counts, leases, waiting lines and the limits live in Redis and are changed
 * only by the functions of `store.lua`; this process keeps its own leases and waiting requests
 * (`LeaseRegistry`, `TicketRegistry`), renews them every third of a lease (`renewAll`), and is
 * woken through pub/sub when one of its requests is admitted.
 *
 * Every answer begins with the epoch of Redis's state: a new one means Redis lost its state,
 * and every lease and request of the old one is lost at once. It also carries the limits in
 * force, shared by every process of the prefix.
 */
export const makeRedisStore = (
  settings: RedisStoreSettings,
  config: StoreConfig
): Effect.Effect<SharedStore, StoreUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    const { leaseMillis, timeoutMillis } = settings
    const keys = keysOf(settings.prefix)
    const db: Connection = yield* connect(settings.redis, timeoutMillis, "connect")
    const subscriber: Connection = yield* connect(settings.redis, timeoutMillis, "subscribe")
    // 64 hex digits: every lease id is then longer than Redis's default zset-max-listpack-value
    // (64 bytes), so the lease set is a skiplist from its first lease, whose insert takes log n
    // steps where a listpack's scans every lease
    const processId = randomBytes(32).toString("hex")
    const channel = `{${settings.prefix}}:wake:${processId}`
    let sequence = 0
    /** A lease or request id: unique, and ending with its user, so that Redis can tell whose it is. */
    const nextId = (user: string) => `${processId}:${(sequence++).toString(36)}:${user}`
    let calls = 0

    // runs logging with this layer's logger and services
    const runInBackground = yield* FiberSet.makeRuntime<never>()
    /** Tells the logs that slots were lost (once per event, however many: a log line costs). */
    const warnLost = (lost: ReadonlyArray<RedisLease>, why: string) =>
      runInBackground(
        Effect.annotateLogs(
          Effect.logWarning(lost.length === 1 ? `slot lost: ${why}` : `${lost.length} slots lost: ${why}`),
          {
            userId: lost.length === 1 ? lost[0]!.userId : lost.slice(0, 10).map((lease) => lease.userId)
          }
        )
      )

    let limits: Limits = { maxUserQueue: config.maxUserQueue, maxTotal: config.maxTotal }
    let epoch: string | undefined
    let isShutdown = false
    let pending = 0
    const refused: Record<RefusalReason | "shutdown", number> = { user: 0, global: 0, waiting: 0, shutdown: 0 }
    let acquired = 0
    /** Who waits for this process to hold nothing (`awaitIdle`), or for its holders to stop (closing). */
    const idle = new Set<() => void>()
    const checkIdle = () => {
      for (const wake of idle) wake()
    }
    const until = (done: () => boolean) =>
      Effect.async<void>((resume) => {
        if (done()) return resume(Effect.void)
        const wake = () => {
          if (!done()) return
          idle.delete(wake)
          resume(Effect.void)
        }
        idle.add(wake)
        return Effect.sync(() => idle.delete(wake))
      })

    // the renewal rounds' clock: a reconnection, or an answer after give-backs piled up, rings it
    const alarm = makeAlarm()
    const renewNow = alarm.wake
    const giveBacks = new GiveBacks(leaseMillis)
    /** Whether something was added to the give-backs since the last answer: the first answer after it brings the round forward. */
    let giveBackSoon = false
    /** Gives `id` back with the next round, which the next answer Redis gives brings forward. */
    const giveBack = (id: string) => {
      giveBacks.add(id)
      giveBackSoon = true
    }
    const leases = new LeaseRegistry(leaseMillis, warnLost, checkIdle)
    const tickets = new TicketRegistry(
      (renewedAt) => leases.deadline(renewedAt),
      (ticket, active, token, renewedAt) => {
        if (ticket.end !== undefined) return sendRelease(ticket.id)
        if (performance.now() >= leases.deadline(renewedAt)) {
          // admitted while this process could not hear of it (paused): its lease may have expired
          sendRelease(ticket.id)
          return ticket.settle(Exit.fail(tooLate("wait")))
        }
        const lease = leases.hold(new RedisLease(ticket.id, ticket.userId, ticket.epoch, token, renewedAt, ticket.raw))
        acquired++
        ticket.settle(Exit.succeed({ active, token, lease }))
      },
      (ticket) => giveBack(ticket.id)
    )

    const tooLate = (operation: string) =>
      new StoreUnavailable({
        operation,
        reason: `the slot was granted too late to be used: its lease of ${leaseMillis} ms could have expired`
      })

    /**
     * Reads the epoch and the limits an answer begins with, and returns the rest. A new epoch:
     * Redis lost its state, and with it every lease and request of this process.
     */
    const observe = (answer: unknown): ReadonlyArray<unknown> => {
      if (!Array.isArray(answer) || answer.length < 3)
        throw new CallFailed(`unexpected answer ${JSON.stringify(answer)}`, true)
      const [now, maxTotal, maxUserQueue] = answer as [string, number, number]
      limits = { maxUserQueue: Number(maxUserQueue), maxTotal: Number(maxTotal) }
      if (now !== epoch) {
        const lost = epoch !== undefined
        epoch = now
        if (lost) {
          leases.loseAllBut(now)
          tickets.failAll(() => new StoreUnavailable({ operation: "wait", reason: "Redis lost its state" }), now)
        }
      }
      if (giveBackSoon) {
        // Redis answers again: what it may hold for nobody (a backlog of late acquisitions) goes back now
        giveBackSoon = false
        renewNow()
      }
      return answer.slice(3)
    }

    /** What every call sends first (see store.lua). */
    const header = () => [
      `${processId.slice(0, 16)}.${(calls++).toString(36)}`,
      leaseMillis,
      channel,
      limits.maxTotal,
      limits.maxUserQueue,
      config.maxWaitingPerUser
    ]

    // acquisitions and releases asked for within one turn of the event loop go out as one call
    const batcher = makeBatcher((args) => db.run("batch", keys, [...header(), ...args]).then(observe), OPS_BATCH)
    yield* Effect.addFinalizer(() => Effect.sync(batcher.flush))

    /** Any other call: sent after the acquisitions and releases asked for before it, so it sees their effect. */
    const call = (script: Script, args: ReadonlyArray<string | number>) => {
      batcher.flush()
      return db.run(script, keys, [...header(), ...args]).then(observe)
    }
    const read = <A>(operation: string, args: ReadonlyArray<string>, f: (answer: ReadonlyArray<unknown>) => A) =>
      Effect.tryPromise({ try: () => call("read", args).then(f), catch: unavailable(operation) })

    /** Gives back a slot in the background; if that fails, it goes with the next round's give-backs. */
    const sendRelease = (id: string) =>
      batcher.add(["r", id], (ok) => {
        if (!ok) giveBack(id)
      })

    /** Takes a request out of its line (or gives back what it was granted); if that fails, as above. */
    const sendLeave = (id: string) =>
      Effect.promise(() =>
        call("leave", [id]).then(
          () => undefined,
          () => giveBack(id)
        )
      )

    /**
     * One acquisition, sent with the others of this turn: its outcome, or `"stale"` when Redis's
     * default limit changed since this process last heard it (the limit depends on it).
     */
    const send = (userId: UserId, bypass: boolean, wait: boolean, raw: boolean, limit: number) =>
      Effect.async<Outcome | "stale", StoreUnavailable>((resume) => {
        const id = nextId(encode(userId))
        const sentAt = performance.now()
        if (wait) tickets.expect(id)
        const flags = (bypass ? 1 : 0) + (wait ? 2 : 0)
        batcher.add(["a", encode(userId), limit, flags, id, limits.maxUserQueue], (ok, value) => {
          const early = tickets.answered(id)
          resume(ok ? outcome(value as ReadonlyArray<unknown>) : failed(value))
          function failed(error: unknown) {
            // the call may still run once Redis answers: whatever it did is given back
            if (!(error instanceof CallFailed) || error.reached) giveBack(id)
            return Effect.fail(unavailable("acquire")(error))
          }
          function outcome(answer: ReadonlyArray<unknown>): Effect.Effect<Outcome | "stale", StoreUnavailable> {
            switch (answer[0]) {
              case 1: {
                if (performance.now() >= leases.deadline(sentAt)) {
                  sendRelease(id)
                  return Effect.fail(tooLate("acquire"))
                }
                const token = Number(answer[2])
                const lease = leases.hold(new RedisLease(id, userId, epoch!, token, sentAt, raw))
                acquired++
                return Effect.succeed({ _tag: "Acquired", grant: { active: Number(answer[1]), token, lease } })
              }
              case 0: {
                const reason = answer[1] as RefusalReason
                refused[reason]++
                return Effect.succeed({ _tag: "Refused", reason, active: Number(answer[2]), limit: Number(answer[3]) })
              }
              case 2: {
                const ticket = new RedisTicket(id, userId, epoch!, sentAt, raw)
                tickets.add(ticket)
                if (early !== undefined) tickets.admitted(ticket, early[0], early[1], sentAt)
                else if (isShutdown) {
                  // sent before the shutdown, answered after: refused as the shutdown refused every waiter
                  refused.shutdown++
                  tickets.fail(ticket, new QueueShutdown({ userId }))
                }
                return Effect.succeed({ _tag: "Waiting", ticket })
              }
              default:
                return Effect.succeed("stale")
            }
          }
        })
      })

    /**
     * An acquisition, sent again, computed under the new default, while Redis's default changes
     * under it. The limit is computed before anything is counted: a tier function that throws
     * changes nothing.
     */
    const sendUntilCurrent = (
      userId: UserId,
      bypass: boolean,
      wait: boolean,
      raw: boolean,
      limit: number,
      tries = 0
    ): Effect.Effect<Outcome, StoreUnavailable> =>
      Effect.flatMap(send(userId, bypass, wait, raw, limit), (outcome) => {
        if (outcome !== "stale") return Effect.succeed(outcome)
        if (tries >= STALE_RETRIES) {
          return Effect.fail(new StoreUnavailable({ operation: "acquire", reason: "the default limit kept changing" }))
        }
        return Effect.suspend(() =>
          sendUntilCurrent(userId, bypass, wait, raw, config.limitOf(userId, limits.maxUserQueue), tries + 1)
        )
      })

    /** An acquisition on its way, counted as such (drain and closing wait for it) until it has its outcome. */
    const acquire = (userId: UserId, bypass: boolean, wait: boolean, raw: boolean) => {
      const limit = config.limitOf(userId, limits.maxUserQueue)
      pending++
      return Effect.ensuring(
        sendUntilCurrent(userId, bypass, wait, raw, limit),
        Effect.sync(() => {
          pending--
          checkIdle()
        })
      )
    }

    const local: Local = {
      get inFlight() {
        return leases.leases.size
      },
      get users() {
        return leases.users
      },
      get waiting() {
        return tickets.waiting.size
      },
      get acquired() {
        return acquired
      },
      refused
    }

    /**
     * Sets the limits and the limits of every user with waiters (computed here, under the new
     * default, as every process computes them alike); a user who starts waiting meanwhile is
     * named by Redis, and the call is made again with it.
     */
    const configure = (next: Limits) =>
      Effect.gen(function* () {
        let users = yield* read("resize", ["waiting"], (answer) => answer as ReadonlyArray<string>)
        for (let attempt = 0; ; attempt++) {
          const args = users.flatMap((user) => [user, config.limitOf(decode(user), next.maxUserQueue)])
          const answer = yield* Effect.tryPromise({
            try: () => call("configure", [next.maxTotal, next.maxUserQueue, ...args]),
            catch: unavailable("resize")
          })
          if (answer[0] === 1) return
          if (attempt >= STALE_RETRIES) {
            return yield* new StoreUnavailable({ operation: "resize", reason: "users kept starting to wait" })
          }
          users = [...users, ...(answer.slice(1) as ReadonlyArray<string>)]
        }
      })

    // subscribed before the first request can wait
    subscriber.redis.on("message", (_channel: string, message: string) => {
      const first = message.indexOf(" ")
      const second = message.indexOf(" ", first + 1)
      tickets.woken(
        message.slice(second + 1),
        Number(message.slice(0, first)),
        Number(message.slice(first + 1, second))
      )
    })
    yield* Effect.tryPromise({
      try: () => subscriber.within(subscriber.redis.subscribe(channel)),
      catch: unavailable("subscribe")
    })
    yield* configure(limits)

    // the renewal round, every third of a lease, and at once after a reconnection (Redis may have
    // restarted, and a wake-up may have been missed)
    db.redis.on("ready", renewNow)
    subscriber.redis.on("ready", renewNow)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        db.redis.off("ready", renewNow)
        subscriber.redis.off("ready", renewNow)
        leases.stop()
        tickets.stop()
      })
    )
    const renewCall: Call = (script, args) => call(script, args)
    yield* Effect.forkScoped(
      // a round starts every third of a lease, however long the last one took (at most a timeout)
      Effect.forever(
        Effect.suspend(() => {
          const started = performance.now()
          return Effect.zipRight(
            renewAll(renewCall, leases, tickets, giveBacks),
            Effect.suspend(() => alarm.sleep(leaseMillis / 3 - (performance.now() - started)))
          )
        })
      )
    )

    const shutdown = Effect.sync(() => {
      isShutdown = true
      tickets.failAll((ticket) => {
        refused.shutdown++
        return new QueueShutdown({ userId: ticket.userId })
      })
    })

    const awaitIdle = until(() => leases.leases.size === 0 && pending === 0)

    // closing: no new work; every holder is stopped, and its lease renewed until it has; the
    // slots of tryAcquire, which nobody can give back once the layer is gone, go back then
    yield* Effect.addFinalizer(() =>
      Effect.all([
        shutdown,
        Effect.sync(() => leases.revokeAll()),
        // a holder that does not stop (uninterruptible, or its scope never closes) is waited for, and said so
        until(() => !leases.hasHolders && pending === 0).pipe(
          Effect.timeoutTo({
            duration: Duration.millis(leaseMillis),
            onSuccess: () => Effect.void,
            onTimeout: () =>
              Effect.zipRight(
                Effect.logWarning("closing waits for holders that have not stopped after a lease time"),
                until(() => !leases.hasHolders && pending === 0)
              )
          }),
          Effect.flatten
        ),
        Effect.sync(() => {
          for (const lease of leases.leases) if (leases.release(lease)) sendRelease(lease.id)
        }),
        // what timed-out calls may have been granted goes back now, not after a lease
        Effect.promise(() => giveBacks.flush(renewCall))
      ])
    )

    const store: SharedStore = {
      acquire: (userId, bypass, wait, raw) =>
        Effect.suspend(() => {
          if (isShutdown) {
            refused.shutdown++
            return Effect.succeed({ _tag: "Shutdown" } as const)
          }
          return acquire(userId, bypass, wait, raw)
        }),
      awaitTurn: (ticket) =>
        Effect.async((resume) => {
          const t = ticket as RedisTicket
          if (t.end !== undefined) return resume(t.end)
          t.wake = resume
          return Effect.sync(() => (t.wake = undefined))
        }),
      leave: (ticket: Ticket) =>
        Effect.suspend(() => {
          const t = ticket as RedisTicket
          if (t.end !== undefined && Exit.isSuccess(t.end)) {
            // admitted while its waiter stopped waiting: the slot goes back
            const lease = t.end.value.lease as RedisLease
            if (leases.release(lease)) sendRelease(lease.id)
            return Effect.void
          }
          tickets.fail(t, new StoreUnavailable({ operation: "wait", reason: "given up" }))
          return sendLeave(t.id)
        }),
      release: (userId, lease) =>
        Effect.sync((): Released => {
          const target = lease instanceof RedisLease ? lease : leases.rawOf(userId)
          if (target === undefined || !leases.release(target)) return undefined
          sendRelease(target.id)
          return "sent"
        }),
      count: (userId) => read("count", ["count", encode(userId)], (answer) => Number(answer[0])),
      users: read("users", ["all"], (answer) => (answer[0] as Array<string>).length / 2),
      snapshot: read("snapshot", ["all"], (answer) => HashMap.fromIterable(pairs(answer[0] as Array<string>))),
      totals: read("stats", ["all"], (answer): Totals => {
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
      limits: () => limits,
      resize: configure,
      shutdown,
      isShutdown: () => isShutdown,
      awaitIdle,
      local,
      held: (userId) => leases.count(userId),
      abandonWaiters: () =>
        tickets.failAll(
          () =>
            new StoreUnavailable({
              operation: "wait",
              reason: "Redis cannot be reached: this process uses its own limits until it can"
            })
        )
    }
    return store
  })
