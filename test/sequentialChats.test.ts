/**
 * The model of the bot's TypeScript rewrite (`examples/sequential-chats.ts`), on the store under
 * test: each rule of the model, through the example's own handler.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option } from "effect"
import { handle, sequentialChats } from "../examples/sequential-chats.js"
import { QueueManager } from "../src/index.js"
import { eventually } from "./eventually.js"
import { withManager } from "./support.js"

const Queue = QueueManager.QueueManager

/** Requests sent through the example's handler one at a time, each running until the test lets it finish. */
const chats = Effect.gen(function* () {
  const q = yield* Queue
  const replies: Array<string> = []
  const started: Array<string> = []
  const running = new Map<QueueManager.UserId, number>()
  let most = 0
  const gates = new Map<string, Deferred.Deferred<void>>()
  /** Sends request `label` of `chatId`; its job runs until `finish(label)`. */
  const send = (chatId: QueueManager.UserId, label: string) =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      gates.set(label, gate)
      const job = Effect.gen(function* () {
        started.push(label)
        running.set(chatId, (running.get(chatId) ?? 0) + 1)
        most = Math.max(most, running.get(chatId)!)
        yield* Deferred.await(gate)
        running.set(chatId, running.get(chatId)! - 1)
      })
      const before = yield* q.status(chatId)
      const fiber = yield* Effect.fork(
        handle(chatId, job, (text) => Effect.sync(() => replies.push(`${label}: ${text}`)))
      )
      // sent one after the other: each is running or queued (counted), or refused, before the next is sent
      const refused = () => replies.some((r) => r.startsWith(`${label}:`) && !r.includes("Queued behind"))
      yield* eventually(
        `${label} is counted or refused`,
        q.status(chatId),
        (now) => now.active + now.waiting > before.active + before.waiting || refused()
      )
      return fiber
    })
  const finish = (label: string) => Deferred.succeed(gates.get(label)!, undefined)
  return { q, send, finish, replies, started, mostPerChat: () => most }
})

/** Waits until the manager holds `inFlight` slots and has `waiting` requests queued. */
const until = (q: QueueManager.Service, inFlight: number, waiting: number) =>
  eventually(
    `${inFlight} running, ${waiting} waiting`,
    q.stats,
    (s) => s.inFlight === inFlight && s.waiting === waiting
  )

describe("the author's model (examples/sequential-chats.ts)", () => {
  it.scoped("each chat runs one request at a time, first in first out", () =>
    Effect.gen(function* () {
      const { q, send, finish, started, mostPerChat } = yield* chats
      const fibers = [yield* send(1, "a")]
      yield* until(q, 1, 0)
      fibers.push(yield* send(1, "b"))
      yield* until(q, 1, 1)
      fibers.push(yield* send(1, "c"))
      yield* until(q, 1, 2)
      for (const label of ["a", "b", "c"]) {
        yield* eventually(
          `${label} started`,
          Effect.sync(() => started),
          (s) => s.includes(label)
        )
        yield* finish(label)
      }
      expect(yield* Effect.forEach(fibers, Fiber.join)).toEqual([
        Option.some(undefined),
        Option.some(undefined),
        Option.some(undefined)
      ])
      expect(started).toEqual(["a", "b", "c"])
      expect(mostPerChat()).toBe(1)
    }).pipe(withManager(sequentialChats))
  )

  it.scoped("a private chat has at most 3 requests queued and running, a group 10; the rest are told why", () =>
    Effect.gen(function* () {
      const { q, send, replies } = yield* chats
      for (let i = 0; i < 4; i++) yield* send(7, `private ${i}`)
      for (let i = 0; i < 11; i++) yield* send(-7, `group ${i}`)
      yield* until(q, 2, 11)
      expect(yield* q.status(7)).toEqual({ active: 1, waiting: 2, limit: 1, maxWaiting: 2 })
      expect(yield* q.status(-7)).toEqual({ active: 1, waiting: 9, limit: 1, maxWaiting: 9 })
      // the pre-check refused the last of each, before any work, saying why
      expect(replies.filter((r) => !r.includes("Queued behind"))).toEqual([
        "private 3: You already have 2 requests queued. Wait for them to finish.",
        "group 10: You already have 9 requests queued. Wait for them to finish."
      ])
    }).pipe(withManager(sequentialChats))
  )

  it.scoped("at most 25 run across chats, the others queued; freed room goes round-robin across chats", () =>
    Effect.gen(function* () {
      const { q, send, finish, started } = yield* chats
      for (let chat = 100; chat < 125; chat++) yield* send(chat, `holder ${chat}`)
      yield* until(q, 25, 0)
      // a group queues three requests, chats 2 and 3 one each, all waiting for room
      for (const label of ["x1", "x2", "x3"]) yield* send(-1, label)
      yield* send(2, "y1")
      yield* send(3, "z1")
      yield* until(q, 25, 5)
      const served = () => started.filter((label) => !label.startsWith("holder"))
      // each freed slot goes to the next chat in turn; a chat's next request waits for its previous one
      yield* finish("holder 100")
      yield* eventually("x1 runs", Effect.sync(served), (s) => s.length === 1)
      yield* finish("x1")
      yield* eventually("y1 runs", Effect.sync(served), (s) => s.length === 2)
      yield* finish("holder 101")
      yield* eventually("z1 runs", Effect.sync(served), (s) => s.length === 3)
      yield* finish("holder 102")
      yield* eventually("x2 runs", Effect.sync(served), (s) => s.length === 4)
      expect(served()).toEqual(["x1", "y1", "z1", "x2"])
      expect((yield* q.stats).inFlight).toBe(25)
    }).pipe(withManager(sequentialChats))
  )

  it.scoped("drain refuses what is queued, with a reply, and waits for what runs to finish", () =>
    Effect.gen(function* () {
      const { q, send, finish, replies } = yield* chats
      const running = yield* send(1, "running")
      yield* send(1, "queued 1")
      yield* send(1, "queued 2")
      yield* until(q, 1, 2)
      const drained = yield* Effect.fork(q.drain)
      yield* eventually(
        "the queued ones are refused",
        Effect.sync(() => replies),
        (r) => r.length >= 4
      )
      expect(replies.filter((r) => r.includes("restarting"))).toEqual([
        "queued 1: The bot is restarting. Try again in a minute.",
        "queued 2: The bot is restarting. Try again in a minute."
      ])
      expect(drained.unsafePoll()).toBeNull()
      yield* finish("running")
      expect(yield* Fiber.join(running)).toEqual(Option.some(undefined))
      yield* Fiber.join(drained)
      expect((yield* q.stats).inFlight).toBe(0)
    }).pipe(withManager(sequentialChats))
  )
})
