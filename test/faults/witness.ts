/**
 * The witness: a loopback TCP server in the test process, outside the library, that every
 * holder reports to. A holder's body says `enter` first and `exit` last (before its slot is
 * given back), each time waiting for the acknowledgement, so the witness sees every holder in
 * causal order: a holder that entered after another left was told of it after that one's exit
 * was counted. It counts holders per user and in all, and records every time a limit is
 * passed. It also guards a fenced resource: a write carrying a lower token than one already
 * written for the user is refused.
 *
 * Messages are JSON lines. Holder to witness: `{t: "hello", pid}` once, then
 * `{t: "enter" | "exit" | "write", n, id, user, token}`; the witness answers `{n}`, and for a
 * write `{n, ok}`.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net"
import { Effect } from "effect"
import type { Scope } from "effect"
import { now } from "./protocol.js"

/** A holder the witness was told of. */
export interface Holder {
  readonly id: string
  readonly user: string
  readonly token: number
  readonly pid: number
  readonly enteredAt: number
  /** When it said `exit`, or its process's connection closed (`removed`). */
  exitedAt: number | undefined
  removed: boolean
  /** A holder of the same user with a higher token (a later grant) entered while it was there. */
  superseded: boolean
}

/** A time a limit was passed: from the enter that passed it until the count came back within it. */
export interface Observation {
  /** A user's limit, or the global one (`maxTotal`). */
  readonly limit: "user" | "total"
  readonly user: string | undefined
  readonly bound: number
  readonly at: number
  endedAt: number | undefined
  /** The highest count while it lasted. */
  count: number
  /** Every holder counted while it lasted. */
  readonly holders: Array<Holder>
}

/** A time a user had no holder, from the last exit to the next enter (only those longer than `minGapMs`). */
export interface Gap {
  readonly user: string
  readonly from: number
  readonly to: number
}

/** The limits the witness holds the holders to (0: none). */
export interface Limits {
  readonly maxUserQueue: number
  readonly maxTotal: number
}

/**
 * What the fenced resource saw. For a user whose limit is 1, a write is stale when a holder of
 * the user that was granted later (a higher token) entered while the writer was there: a holder
 * with a valid lease writes before it leaves, and nobody is granted its slot before it has left.
 * (With more slots an older holder may write last legitimately, so only limit-1 users are
 * judged.) Whether the tokens themselves grow as they should is checked apart (`Tokens`).
 */
export interface Writes {
  accepted: number
  refused: number
  staleAccepted: number
  staleRefused: number
  /** Writes of limit-1 users refused though not stale: a holder with a valid lease carried a lower token than an earlier holder's. */
  falselyRefused: number
}

/**
 * Fencing tokens as the holders report them. A token must be a safe integer, and must grow:
 * for a user whose limit is 1, a holder that enters while nobody holds the user was granted
 * after every earlier holder of the user, so its token must be above theirs.
 */
export interface Tokens {
  invalid: number
  regressions: number
  /** The first few anomalies, described. */
  readonly examples: Array<string>
}

/** Observations kept at most (a broken store could pass a limit millions of times); further ones are only counted. */
const MAX_OBSERVATIONS = 10_000
const MAX_GAPS = 10_000

/** The witness server and what it saw. */
export class Witness {
  /** Holders now, by id. */
  readonly holders = new Map<string, Holder>()
  private readonly perUser = new Map<string, Set<Holder>>()
  private readonly open = new Map<string, Observation>()
  /** Limits passed, oldest first (a long run takes them out as it classifies them). */
  observations: Array<Observation> = []
  /** Observations not kept for want of room. */
  overflow = 0
  /** The highest count seen per user, and in all. */
  readonly maxSeen = new Map<string, number>()
  maxTotalSeen = 0
  enters = 0
  /** Holders that entered, per process. */
  readonly entersBy = new Map<number, number>()
  readonly writes: Writes = { accepted: 0, refused: 0, staleAccepted: 0, staleRefused: 0, falselyRefused: 0 }
  readonly tokens: Tokens = { invalid: 0, regressions: 0, examples: [] }
  /** Holders removed because their process's connection closed (it died, or never said exit). */
  removedOnClose = 0
  gaps: Array<Gap> = []
  private readonly idleSince = new Map<string, number>()
  private readonly highestWritten = new Map<string, number>()
  private readonly highestEntered = new Map<string, number>()
  private readonly waiters = new Set<{ readonly match: (h: Holder) => boolean; readonly done: (h: Holder) => void }>()
  readonly sockets = new Set<Socket>()

  constructor(
    readonly limits: Limits,
    /** Gaps shorter than this are not recorded (a busy user has one between any two holders). */
    readonly minGapMs = 50
  ) {}

  /** The limit of `user` (every user has `maxUserQueue`). */
  limitOf(_user: string): number {
    return this.limits.maxUserQueue
  }

  /** Holders of process `pid` now. */
  heldBy(pid: number): number {
    let n = 0
    for (const holder of this.holders.values()) if (holder.pid === pid) n++
    return n
  }

  /** Resolves with the first holder entering from now on for which `match` holds, or `undefined` after `timeoutMs`. */
  nextEnter(match: (holder: Holder) => boolean, timeoutMs: number): Promise<Holder | undefined> {
    return new Promise((resolve) => {
      const waiter = {
        match,
        done: (holder: Holder | undefined) => {
          clearTimeout(timer)
          this.waiters.delete(waiter)
          resolve(holder)
        }
      }
      const timer = setTimeout(() => waiter.done(undefined), timeoutMs)
      this.waiters.add(waiter)
    })
  }

  /** The recorded gaps, removed from the witness. */
  takeGaps(): Array<Gap> {
    const gaps = this.gaps
    this.gaps = []
    return gaps
  }

  enter(id: string, user: string, token: number, pid: number): Holder {
    const at = now()
    this.enters++
    this.entersBy.set(pid, (this.entersBy.get(pid) ?? 0) + 1)
    const holder: Holder = {
      id,
      user,
      token,
      pid,
      enteredAt: at,
      exitedAt: undefined,
      removed: false,
      superseded: false
    }
    this.holders.set(id, holder)
    let users = this.perUser.get(user)
    if (users === undefined) this.perUser.set(user, (users = new Set()))
    const highest = this.highestEntered.get(user)
    if (!Number.isSafeInteger(token)) this.tokenAnomaly("invalid", `user ${user}: token ${token} from pid ${pid}`)
    else if (users.size === 0 && this.limitOf(user) === 1 && highest !== undefined && token <= highest)
      this.tokenAnomaly("regressions", `user ${user}: token ${token} from pid ${pid} after ${highest}`)
    if (users.size === 0) {
      const since = this.idleSince.get(user)
      if (since !== undefined && at - since >= this.minGapMs && this.gaps.length < MAX_GAPS)
        this.gaps.push({ user, from: since, to: at })
    }
    for (const other of users) if (other.token < token) other.superseded = true
    users.add(holder)
    if (Number.isSafeInteger(token)) this.highestEntered.set(user, Math.max(highest ?? -Infinity, token))
    this.maxSeen.set(user, Math.max(this.maxSeen.get(user) ?? 0, users.size))
    this.maxTotalSeen = Math.max(this.maxTotalSeen, this.holders.size)
    this.check(`u:${user}`, "user", user, users.size, this.limitOf(user), holder, users)
    this.check("total", "total", undefined, this.holders.size, this.limits.maxTotal, holder, this.holders.values())
    for (const waiter of this.waiters) if (waiter.match(holder)) waiter.done(holder)
    return holder
  }

  exit(id: string, removed = false): void {
    const holder = this.holders.get(id)
    if (holder === undefined) return
    const at = now()
    holder.exitedAt = at
    holder.removed = removed
    if (removed) this.removedOnClose++
    this.holders.delete(id)
    const users = this.perUser.get(holder.user)!
    users.delete(holder)
    if (users.size === 0) this.idleSince.set(holder.user, at)
    this.close(`u:${holder.user}`, users.size, this.limitOf(holder.user), at)
    this.close("total", this.holders.size, this.limits.maxTotal, at)
  }

  /** The fenced resource: accepts a write unless a higher token was written for `user` already. */
  write(id: string, user: string, token: number): boolean {
    const highest = this.highestWritten.get(user) ?? -Infinity
    const ok = Number.isSafeInteger(token) && token >= highest
    if (ok) this.highestWritten.set(user, token)
    const judged = this.limitOf(user) === 1
    const writer = this.holders.get(id)
    const stale = judged && writer !== undefined && writer.superseded
    if (ok) {
      this.writes.accepted++
      if (stale) this.writes.staleAccepted++
    } else {
      this.writes.refused++
      if (stale) this.writes.staleRefused++
      else if (judged) this.writes.falselyRefused++
    }
    return ok
  }

  private tokenAnomaly(kind: "invalid" | "regressions", example: string) {
    this.tokens[kind]++
    if (this.tokens.examples.length < 10) this.tokens.examples.push(example)
  }

  private check(
    key: string,
    limit: "user" | "total",
    user: string | undefined,
    count: number,
    bound: number,
    holder: Holder,
    all: Iterable<Holder>
  ) {
    if (bound === 0 || count <= bound) return
    const open = this.open.get(key)
    if (open !== undefined) {
      open.count = Math.max(open.count, count)
      open.holders.push(holder)
      return
    }
    const observation: Observation = {
      limit,
      user,
      bound,
      at: holder.enteredAt,
      endedAt: undefined,
      count,
      holders: Array.from(all)
    }
    this.open.set(key, observation)
    if (this.observations.length < MAX_OBSERVATIONS) this.observations.push(observation)
    else this.overflow++
  }

  private close(key: string, count: number, bound: number, at: number) {
    const open = this.open.get(key)
    if (open === undefined || count > bound) return
    open.endedAt = at
    this.open.delete(key)
  }

  /** Serves one holder process's connection. */
  serve(socket: Socket): void {
    this.sockets.add(socket)
    socket.setNoDelay(true)
    let pid = -1
    const mine = new Set<string>()
    let buffer = ""
    socket.on("data", (data: Buffer) => {
      buffer += data.toString("utf8")
      let newline: number
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        const m = JSON.parse(line) as { t: string; n: number; id: string; user: string; token: number; pid: number }
        switch (m.t) {
          case "hello":
            pid = m.pid
            continue
          case "enter":
            this.enter(m.id, m.user, m.token, pid)
            mine.add(m.id)
            socket.write(`{"n":${m.n}}\n`)
            continue
          case "exit":
            this.exit(m.id)
            mine.delete(m.id)
            socket.write(`{"n":${m.n}}\n`)
            continue
          case "write":
            socket.write(`{"n":${m.n},"ok":${this.write(m.id, m.user, m.token)}}\n`)
        }
      }
    })
    socket.on("error", () => {})
    // the process died (or left without saying exit): its holders are gone
    socket.on("close", () => {
      this.sockets.delete(socket)
      for (const id of mine) this.exit(id, true)
    })
  }
}

/** A witness listening on a free loopback port, until the scope closes. */
export const makeWitness = (limits: Limits): Effect.Effect<{ witness: Witness; port: number }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ witness: Witness; port: number; server: Server }>((resume) => {
      const witness = new Witness(limits)
      const server = createServer((socket) => witness.serve(socket))
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ witness, server, port: (server.address() as { port: number }).port }))
      )
    }),
    ({ server, witness }) =>
      Effect.async<void>((resume) => {
        for (const socket of witness.sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )

/** A holder process's connection to the witness. */
export interface WitnessClient {
  readonly enter: (id: string, user: string, token: number) => Promise<void>
  readonly exit: (id: string) => Promise<void>
  /** The fenced write: whether it was accepted. */
  readonly write: (id: string, user: string, token: number) => Promise<boolean>
}

/** Connects to the witness on `port`; `onClose` runs if the connection ends (the test is gone). */
export const connectWitness = (port: number, onClose: () => void): Promise<WitnessClient> =>
  new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    socket.setNoDelay(true)
    const pending = new Map<number, (ok: boolean) => void>()
    let n = 0
    let buffer = ""
    socket.on("data", (data: Buffer) => {
      buffer += data.toString("utf8")
      let newline: number
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const m = JSON.parse(buffer.slice(0, newline)) as { n: number; ok?: boolean }
        buffer = buffer.slice(newline + 1)
        const done = pending.get(m.n)
        pending.delete(m.n)
        done?.(m.ok ?? true)
      }
    })
    socket.once("error", reject)
    socket.once("close", onClose)
    const ask = (message: Record<string, unknown>) =>
      new Promise<boolean>((answer) => {
        const id = n++
        pending.set(id, answer)
        socket.write(JSON.stringify({ ...message, n: id }) + "\n")
      })
    socket.once("connect", () => {
      socket.write(JSON.stringify({ t: "hello", pid: process.pid }) + "\n")
      resolve({
        enter: (id, user, token) => ask({ t: "enter", id, user, token }).then(() => undefined),
        exit: (id) => ask({ t: "exit", id }).then(() => undefined),
        write: (id, user, token) => ask({ t: "write", id, user, token })
      })
    })
  })
