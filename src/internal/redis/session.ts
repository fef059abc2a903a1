import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import type { UserId } from "../../QueueManager.js"
import { StoreUnavailable } from "../errors.js"
import type { Limits, StoreConfig } from "../store.js"
import { type Batcher, makeBatcher, type Settle } from "./batcher.js"
import { CallFailed, type Connection, unavailable } from "./connection.js"
import { keysOf, type Script } from "./lua.js"

/** How many acquisitions and releases one round trip carries at most. */
const OPS_BATCH = 32

/** How often a call is made again because what it depends on changed meanwhile. */
export const STALE_RETRIES = 5

/** A user id as Redis keeps it: numbers and strings stay apart (`n1` is not `s1`). */
export const encodeUser = (userId: UserId): string => (typeof userId === "number" ? `n${userId}` : `s${userId}`)

/** The user id Redis keeps as `key`. */
export const decodeUser = (key: string): UserId => (key[0] === "n" ? Number(key.slice(1)) : key.slice(1))

/** What the session tells the rest of the store about the answers it reads. */
export interface SessionEvents {
  /** Redis lost its state: every lease and request of another epoch than `epoch` is gone. */
  readonly stateLost: (epoch: string) => void
  /** Redis answered a call. */
  readonly answered: () => void
}

/**
 * This process's conversation with Redis: the ids it makes, what every call sends first, and
 * what every answer begins with (the epoch of Redis's state and the limits in force, shared by
 * every process of the prefix). Acquisitions and releases asked for within one turn of the event
 * loop go out as one call; any other call goes after them, so that it sees their effect.
 */
export class Session {
  /**
   * 64 hex digits: every lease id is then longer than Redis's default zset-max-listpack-value
   * (64 bytes), so the lease set is a skiplist from its first lease, whose insert takes log n
   * steps where a listpack's scans every lease.
   */
  readonly processId = randomBytes(32).toString("hex")
  /** Where Redis publishes the admissions of this process's requests. */
  readonly channel: string
  /** The limits in force, as the last answer told them. */
  limits: Limits
  /** The epoch of Redis's state, as the last answer told it. */
  epoch: string | undefined
  private readonly keys: ReadonlyArray<string>
  private readonly batcher: Batcher
  private sequence = 0
  private calls = 0

  constructor(
    private readonly db: Connection,
    prefix: string,
    private readonly leaseMillis: number,
    private readonly config: StoreConfig,
    private readonly events: SessionEvents
  ) {
    this.keys = keysOf(prefix)
    this.channel = `{${prefix}}:wake:${this.processId}`
    this.limits = { maxUserQueue: config.maxUserQueue, maxTotal: config.maxTotal }
    this.batcher = makeBatcher((args) => this.send("batch", args), OPS_BATCH)
  }

  /** A lease or request id: unique, and ending with its user, so that Redis can tell whose it is. */
  nextId(userId: UserId): string {
    return `${this.processId}:${(this.sequence++).toString(36)}:${encodeUser(userId)}`
  }

  /** Queues an acquisition or a release (its arguments to `batch` in store.lua) for the next batch. */
  batch(args: ReadonlyArray<string | number>, settle: Settle): void {
    this.batcher.add(args, settle)
  }

  /** Sends the queued batch now. */
  flush(): void {
    this.batcher.flush()
  }

  /** Runs `script`, after the batch queued before it; resolves with the answer after its epoch and limits. */
  call(script: Exclude<Script, "batch">, args: ReadonlyArray<string | number>): Promise<ReadonlyArray<unknown>> {
    this.batcher.flush()
    return this.send(script, args)
  }

  /** A `read` call as an Effect, failing with `StoreUnavailable` naming `operation`. */
  read<A>(operation: string, args: ReadonlyArray<string>, f: (answer: ReadonlyArray<unknown>) => A) {
    return Effect.tryPromise({ try: () => this.call("read", args).then(f), catch: unavailable(operation) })
  }

  /**
   * Sets the limits and the limits of every user with waiters (computed here, under the new
   * default, as every process computes them alike); a user who starts waiting meanwhile is
   * named by Redis, and the call is made again with it. `operation` names it in an error.
   */
  configure(next: Limits, operation = "resize"): Effect.Effect<void, StoreUnavailable> {
    return Effect.gen(this, function* () {
      let users = yield* this.read(operation, ["waiting"], (answer) => answer as ReadonlyArray<string>)
      for (let attempt = 0; ; attempt++) {
        const args = users.flatMap((user) => [user, this.config.tierOf(decodeUser(user), next.maxUserQueue).limit])
        const answer = yield* Effect.tryPromise({
          try: () => this.call("configure", [next.maxTotal, next.maxUserQueue, ...args]),
          catch: unavailable(operation)
        })
        if (answer[0] === 1) return
        if (attempt >= STALE_RETRIES) {
          return yield* new StoreUnavailable({ operation, reason: "users kept starting to wait" })
        }
        users = [...users, ...(answer.slice(1) as ReadonlyArray<string>)]
      }
    })
  }

  private send(script: Script, args: ReadonlyArray<string | number>): Promise<ReadonlyArray<unknown>> {
    return this.db.run(script, this.keys, [...this.header(), ...args]).then((answer) => this.observe(answer))
  }

  /** What every call sends first (see store.lua). */
  private header(): Array<string | number> {
    return [
      `${this.processId.slice(0, 16)}.${(this.calls++).toString(36)}`,
      this.leaseMillis,
      this.channel,
      this.limits.maxTotal,
      this.limits.maxUserQueue
    ]
  }

  /** Reads the epoch and the limits an answer begins with, and returns the rest. */
  private observe(answer: unknown): ReadonlyArray<unknown> {
    if (!Array.isArray(answer) || answer.length < 3) {
      throw new CallFailed(`unexpected answer ${JSON.stringify(answer)}`, true)
    }
    const [epoch, maxTotal, maxUserQueue] = answer as [string, number, number]
    this.limits = { maxUserQueue: Number(maxUserQueue), maxTotal: Number(maxTotal) }
    if (epoch !== this.epoch) {
      const lost = this.epoch !== undefined
      this.epoch = epoch
      if (lost) this.events.stateLost(epoch)
    }
    this.events.answered()
    return answer.slice(3)
  }
}
