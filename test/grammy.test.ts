import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, HashMap, Layer, ManagedRuntime, Queue } from "effect"
import { Bot, BotError, webhookCallback } from "grammy"
import type { Context as GrammyContext, MiddlewareFn } from "grammy"
import type { Update } from "grammy/types"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as QueueGrammy from "../src/Grammy.js"
import { QueueManager } from "../src/index.js"
import { botInfo, startBotApi } from "./botApiStandIn.js"
import type { BotApi } from "./botApiStandIn.js"
import {
  chosenInlineResult,
  groupMessage,
  inlineQuery,
  pollUpdate,
  privateMessage,
  seedReply
} from "./telegramUpdates.js"

/** Where each handled update came from: the chat, or the sender for updates without one. */
const whoOf = (ctx: GrammyContext) => ctx.chat?.id ?? ctx.from?.id ?? "none"

interface Harness {
  readonly api: BotApi
  readonly bot: Bot
  /** The key of each update that reached the handler, in order. */
  readonly entered: Queue.Queue<number | string>
  /** Lets every update waiting in the handler finish. */
  readonly openGate: () => void
  readonly counts: Effect.Effect<Record<string, number>>
  readonly queue: QueueManager.Service
}

/**
 * A real grammY `Bot` talking to a stand-in Bot API server, with `middleware` in front of a
 * handler that records each update reaching it and then waits for the gate.
 */
const makeBot = (middleware: MiddlewareFn<GrammyContext>, queue: QueueManager.Service) =>
  Effect.gen(function* () {
    const api = yield* startBotApi
    const entered = yield* Queue.unbounded<number | string>()
    let openGate = () => {}
    const gate = new Promise<void>((resolve) => (openGate = resolve))
    yield* Effect.addFinalizer(() => Effect.sync(openGate))
    const bot = new Bot("42:TEST", { botInfo, client: { apiRoot: api.apiRoot } })
    bot.use(middleware)
    bot.use(async (ctx) => {
      Queue.unsafeOffer(entered, whoOf(ctx))
      await gate
    })
    const counts = Effect.map(Effect.orDie(queue.snapshot), (s) => Object.fromEntries(HashMap.toEntries(s)))
    return { api, bot, entered, openGate, counts, queue } satisfies Harness
  })

/** Hands `update` to the bot and gives the promise of its handling. */
const handle = (bot: Bot, update: Update) => bot.handleUpdate(update)

/** Runs `handling` of an update that must be refused; fails at once if the update reaches the handler instead. */
const refused = <A>(h: Harness, handling: Effect.Effect<A>) =>
  Effect.raceFirst(
    handling,
    Effect.flatMap(Queue.take(h.entered), (who) => Effect.die(`an update of ${who} reached the handler`))
  )

/** Starts handling every update and waits until `n` of them reached the handler. */
const enter = (h: Harness, updates: ReadonlyArray<Update>) =>
  Effect.gen(function* () {
    const handled = updates.map((u) => handle(h.bot, u))
    // the gate is closed: an update whose handling ends now never reached the handler
    const endedEarly = Effect.promise(() => Promise.race(handled.map((p) => p.then(String, String))))
    const who = yield* Effect.raceFirst(
      Queue.takeBetween(h.entered, updates.length, updates.length),
      Effect.flatMap(endedEarly, (outcome) => Effect.die(`an update never reached the handler (${outcome})`))
    )
    return { handled, who: Array.from(who) }
  })

const layer = QueueManager.layer({ maxUserQueue: 2 })

/** The three ways of giving the middleware a runtime, each with the QueueManager it holds. */
const runtimes: ReadonlyArray<
  [
    string,
    Effect.Effect<readonly [MiddlewareFn<GrammyContext>, QueueManager.Service], never, import("effect").Scope.Scope>
  ]
> = [
  [
    "a ManagedRuntime",
    Effect.gen(function* () {
      const runtime = yield* Effect.acquireRelease(
        Effect.sync(() => ManagedRuntime.make(layer)),
        (r) => Effect.promise(() => r.dispose())
      )
      const queue = yield* Effect.promise(() => runtime.runPromise(QueueManager.QueueManager))
      return [QueueGrammy.middleware(runtime), queue] as const
    })
  ],
  [
    "a Runtime built from layers",
    Effect.gen(function* () {
      const runtime = yield* Layer.toRuntime(layer).pipe(Effect.orDie)
      return [QueueGrammy.middleware(runtime), Context.get(runtime.context, QueueManager.QueueManager)] as const
    })
  ],
  [
    "the current runtime (make)",
    Effect.gen(function* () {
      return [yield* QueueGrammy.make(), yield* QueueManager.QueueManager] as const
    }).pipe(Effect.provide(layer), Effect.orDie)
  ]
]

describe.each(runtimes)("grammY middleware on %s", (_name, build) => {
  it.scopedLive("a chat's updates share its slots; a refused private chat gets the seed's reply, a group none", () =>
    Effect.gen(function* () {
      const [middleware, queue] = yield* build
      const h = yield* makeBot(middleware, queue)

      const inFlight = yield* enter(h, [
        privateMessage(7),
        privateMessage(7),
        groupMessage(-100, 1),
        groupMessage(-100, 2)
      ])
      expect([...inFlight.who].sort()).toEqual([-100, -100, 7, 7])
      expect(yield* h.counts).toEqual({ 7: 2, [-100]: 2 })

      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, privateMessage(7)))
      )
      expect(h.api.callsOf("sendMessage").map((c) => c.payload)).toEqual([{ chat_id: 7, text: seedReply(2) }])

      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, groupMessage(-100, 3)))
      )
      expect(h.api.callsOf("sendMessage")).toHaveLength(1)
      expect(yield* Queue.size(h.entered)).toBe(0)

      // another chat is unaffected
      const other = yield* enter(h, [privateMessage(8)])
      expect(other.who).toEqual([8])

      h.openGate()
      yield* Effect.promise(() => Promise.all([...inFlight.handled, ...other.handled]))
      expect(yield* h.counts).toEqual({})
      expect(yield* queue.activeUsers).toBe(0)
    })
  )
})

describe("grammY middleware", () => {
  const setup = (options?: QueueGrammy.Options) =>
    Effect.gen(function* () {
      const queue = yield* QueueManager.QueueManager
      const middleware = yield* QueueGrammy.make(options)
      return yield* makeBot(middleware, queue)
    }).pipe(Effect.provide(layer))

  it.scopedLive("inline queries and chosen inline results bypass the sender's limit and are counted", () =>
    Effect.gen(function* () {
      const h = yield* setup()
      const held = yield* enter(h, [privateMessage(7), privateMessage(7)])
      const inline = yield* enter(h, [inlineQuery(7), chosenInlineResult(7)])
      expect(inline.who).toEqual([7, 7])
      expect(yield* h.counts).toEqual({ 7: 4 })

      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, privateMessage(7)))
      )
      expect(h.api.callsOf("sendMessage").map((c) => c.payload.text)).toEqual([seedReply(4)])

      h.openGate()
      yield* Effect.promise(() => Promise.all([...held.handled, ...inline.handled]))
      expect(yield* h.counts).toEqual({})
    })
  )

  it.scopedLive("through a webhook: a refused private chat's reply reaches the Bot API, a group's does not", () =>
    Effect.gen(function* () {
      const h = yield* setup()
      const server = createServer(webhookCallback(h.bot, "http"))
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () =>
          Effect.async<void>((resume) => {
            server.closeAllConnections()
            server.close(() => resume(Effect.void))
          })
      )
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
      const post = (update: Update) =>
        Effect.promise(() =>
          fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(update) })
        )

      const held = yield* enter(h, [privateMessage(7), privateMessage(7), groupMessage(-5, 1), groupMessage(-5, 1)])
      expect((yield* refused(h, post(privateMessage(7)))).status).toBe(200)
      expect((yield* refused(h, post(groupMessage(-5, 2)))).status).toBe(200)
      expect(h.api.callsOf("sendMessage").map((c) => c.payload)).toEqual([{ chat_id: 7, text: seedReply(2) }])

      const viaWebhook = yield* Effect.fork(post(privateMessage(9)))
      expect(yield* Queue.take(h.entered)).toBe(9)
      expect(yield* h.counts).toEqual({ 7: 2, [-5]: 2, 9: 1 })

      h.openGate()
      expect((yield* viaWebhook.await.pipe(Effect.flatten)).status).toBe(200)
      yield* Effect.promise(() => Promise.all(held.handled))
      expect(yield* h.counts).toEqual({})
    })
  )

  it.scopedLive("an error of the rest of the chain reaches grammY unchanged, and the slot is released", () =>
    Effect.gen(function* () {
      const queue = yield* QueueManager.QueueManager
      const api = yield* startBotApi
      const bot = new Bot("42:TEST", { botInfo, client: { apiRoot: api.apiRoot } })
      const boom = new Error("download failed")
      let countInside = -1
      bot.use(yield* QueueGrammy.make())
      bot.use(async () => {
        countInside = await Effect.runPromise(queue.activeCount(7))
        throw boom
      })
      const error = yield* Effect.promise(() => handle(bot, privateMessage(7)).catch((e: unknown) => e))
      expect(error).toBeInstanceOf(BotError)
      expect((error as BotError).error).toBe(boom)
      expect(countInside).toBe(1)
      expect(yield* queue.activeCount(7)).toBe(0)
    }).pipe(Effect.provide(layer))
  )

  it.scopedLive("every rule can be replaced: key, bypass, reply text, which chats get replies", () =>
    Effect.gen(function* () {
      const h = yield* setup({
        key: (ctx) => ctx.from?.id,
        bypass: () => false,
        replyText: (refusal) => (refusal._tag === "QueueFull" ? `busy ${refusal.active}/${refusal.limit}` : "who?"),
        replyWhen: () => true
      })
      // per sender now: two members of a group do not share an allowance
      const held = yield* enter(h, [groupMessage(-5, 1), groupMessage(-5, 1), groupMessage(-5, 2)])
      expect(yield* h.counts).toEqual({ 1: 2, 2: 1 })
      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, groupMessage(-5, 1)))
      )
      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, inlineQuery(1)))
      )
      // the group is answered; the inline query is refused (no bypass) and has no chat to answer in
      expect(h.api.callsOf("sendMessage").map((c) => c.payload)).toEqual([{ chat_id: -5, text: "busy 2/2" }])
      expect(yield* Queue.size(h.entered)).toBe(0)
      h.openGate()
      yield* Effect.promise(() => Promise.all(held.handled))
      expect(yield* h.counts).toEqual({})
    })
  )

  it.scopedLive("updates without a key run without a slot by default, and are dropped under reject", () =>
    Effect.gen(function* () {
      const allowing = yield* setup()
      const poll = yield* enter(allowing, [pollUpdate()])
      expect(poll.who).toEqual(["none"])
      expect(yield* allowing.counts).toEqual({})
      allowing.openGate()
      yield* Effect.promise(() => Promise.all(poll.handled))

      const rejecting = yield* setup({
        onMissingKey: "reject",
        key: (ctx) => (ctx.chat?.id === 7 ? Number.NaN : ctx.chat?.id)
      })
      yield* refused(
        rejecting,
        Effect.promise(() => handle(rejecting.bot, pollUpdate()))
      )
      yield* refused(
        rejecting,
        Effect.promise(() => handle(rejecting.bot, privateMessage(7)))
      )
      expect(yield* Queue.size(rejecting.entered)).toBe(0)
      // an invalid key is no key; the private chat is told
      expect(rejecting.api.callsOf("sendMessage").map((c) => c.payload)).toEqual([
        { chat_id: 7, text: "Sorry, I cannot tell who sent this." }
      ])
    })
  )

  it.scopedLive("once the manager is shut down, a private chat is told the bot is restarting", () =>
    Effect.gen(function* () {
      const h = yield* setup()
      yield* h.queue.shutdown
      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, privateMessage(7)))
      )
      expect(h.api.callsOf("sendMessage").map((c) => c.payload.text)).toEqual([
        "The bot is restarting. Try again in a moment."
      ])
    })
  )

  it.scopedLive("an update arriving after the runtime is disposed is refused with QueueShutdown, not thrown", () =>
    Effect.gen(function* () {
      const runtime = ManagedRuntime.make(QueueManager.layer({ maxUserQueue: 1 }))
      const queue = yield* Effect.promise(() => runtime.runPromise(QueueManager.QueueManager))
      const refusals: Array<string> = []
      const h = yield* makeBot(
        QueueGrammy.middleware(runtime, { onRefused: (_ctx, refusal) => void refusals.push(refusal._tag) }),
        queue
      )
      yield* Effect.promise(() => runtime.dispose())
      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, privateMessage(7)))
      )
      expect(refusals).toEqual(["QueueShutdown"])
    })
  )

  it.scopedLive("a burst of refusals in a chat gets one reply per cooldown; replyCooldown: 0 answers each", () =>
    Effect.gen(function* () {
      const refuseFour = (h: Harness) =>
        Effect.forEach([1, 2, 3, 4], () =>
          refused(
            h,
            Effect.promise(() => handle(h.bot, privateMessage(7)))
          )
        )
      const quiet = yield* setup({ replyCooldown: 300 })
      const held = yield* enter(quiet, [privateMessage(7), privateMessage(7)])
      yield* refuseFour(quiet)
      expect(quiet.api.callsOf("sendMessage").map((c) => c.payload)).toEqual([{ chat_id: 7, text: seedReply(2) }])
      yield* Effect.sleep("350 millis") // the cooldown is over: the next refusal is answered again
      yield* refuseFour(quiet)
      expect(quiet.api.callsOf("sendMessage")).toHaveLength(2)
      quiet.openGate()
      yield* Effect.promise(() => Promise.all(held.handled))

      const chatty = yield* setup({ replyCooldown: 0 })
      const again = yield* enter(chatty, [privateMessage(9), privateMessage(9)])
      yield* Effect.forEach([1, 2, 3], () =>
        refused(
          chatty,
          Effect.promise(() => handle(chatty.bot, privateMessage(9)))
        )
      )
      expect(chatty.api.callsOf("sendMessage")).toHaveLength(3)
      chatty.openGate()
      yield* Effect.promise(() => Promise.all(again.handled))
    })
  )

  it.scopedLive("onRefused replaces the reply: it gets the update, the refusal and next", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const h = yield* setup({
        onRefused: (ctx, refusal, next) => {
          seen.push(`${ctx.chat?.id} ${refusal._tag}`)
          // chat 8 is let through without a slot; chat 7 is dropped silently
          return ctx.chat?.id === 8 ? next() : undefined
        }
      })
      const held = yield* enter(h, [privateMessage(7), privateMessage(7), privateMessage(8), privateMessage(8)])
      yield* refused(
        h,
        Effect.promise(() => handle(h.bot, privateMessage(7)))
      )
      const through = yield* enter(h, [privateMessage(8)])
      expect(through.who).toEqual([8])
      expect(seen).toEqual(["7 QueueFull", "8 QueueFull"])
      expect(h.api.callsOf("sendMessage")).toHaveLength(0)
      expect(yield* h.counts).toEqual({ 7: 2, 8: 2 })
      h.openGate()
      yield* Effect.promise(() => Promise.all([...held.handled, ...through.handled]))
    })
  )

  it("rejects invalid options, naming the option and the value", () => {
    const runtime = ManagedRuntime.make(layer)
    const make = QueueGrammy.middleware as (runtime: unknown, options?: unknown) => unknown
    expect(() => make(runtime, { key: "chat" })).toThrow(
      'effect-queue-manager/Grammy: key must be a function, got "chat"'
    )
    expect(() => make(runtime, { replyWhen: true })).toThrow("replyWhen must be a function, got true")
    expect(() => make(runtime, { onRefused: "reply" })).toThrow('onRefused must be a function, got "reply"')
    expect(() => make(runtime, { replyCooldown: -5 })).toThrow("replyCooldown must be whole milliseconds >= 0, got -5")
    expect(() => make(runtime, { onMissingKey: { shared: 1.5 } })).toThrow('got {"shared":1.5}')
    expect(() => make({}, {})).toThrow("runtime must be a Runtime or a ManagedRuntime, got {}")
    expect(() => make(runtime, null)).toThrow("options must be an object, got null")
  })
})
