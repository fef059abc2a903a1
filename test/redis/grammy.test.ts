import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime } from "effect"
import { Bot, BotError } from "grammy"
import * as QueueGrammy from "../../src/Grammy.js"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { botInfo, startBotApi } from "../botApiStandIn.js"
import { privateMessage } from "../telegramUpdates.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"
import { loseState } from "./helpers.js"

/** A handler's signals: `entered()` resolves `inHandler`; the handler awaits `gate` until `finish()`. */
const handlerGate = () => {
  let entered = () => {}
  const inHandler = new Promise<void>((resolve) => (entered = resolve))
  let finish = () => {}
  const gate = new Promise<void>((resolve) => (finish = resolve))
  return { entered: () => entered(), inHandler, finish: () => finish(), gate }
}

describe("grammY middleware on the Redis store", () => {
  it.scopedLive("a lease lost while the chain runs keeps the slot counted until the chain settles, then throws", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const runtime = yield* Layer.toRuntime(RedisStore.layer({ maxUserQueue: 1, redis: redisUrl, prefix }))
      const queue = yield* QueueManager.QueueManager.pipe(Effect.provide(runtime))
      const api = yield* startBotApi
      const bot = new Bot("42:TEST", { botInfo, client: { apiRoot: api.apiRoot } })
      const { entered, inHandler, finish, gate } = handlerGate()
      let finishedAt = 0
      bot.use(QueueGrammy.middleware(runtime))
      bot.use(async () => {
        entered()
        await gate
        finishedAt = Date.now()
      })
      const handling = bot
        .handleUpdate({
          update_id: 1,
          message: {
            message_id: 1,
            date: 0,
            chat: { id: 7, type: "private", first_name: "x" },
            from: { id: 7, is_bot: false, first_name: "x" },
            text: "a link"
          }
        })
        .then(
          () => ({ threw: undefined, at: Date.now() }),
          (error: unknown) => ({ threw: error, at: Date.now() })
        )
      yield* Effect.promise(() => inHandler)
      yield* loseState(prefix)
      yield* queue.activeCount(7) // its answer tells the store that Redis lost its state
      const idle = yield* Effect.fork(queue.awaitIdle)
      yield* Effect.sleep("200 millis")
      // the chain is still running: the middleware has not given up, the slot is still this process's
      expect(idle.unsafePoll()).toBeNull()
      finish()
      const { threw, at } = yield* Effect.promise(() => handling)
      expect(threw).toBeInstanceOf(BotError)
      expect((threw as BotError).error).toEqual(new QueueManager.LeaseLost({ userId: 7 }))
      expect(at).toBeGreaterThanOrEqual(finishedAt)
      yield* idle.await
    })
  )

  it.scopedLive(
    "a runtime disposed mid-update: the update running ends as handled, one waiting is told the bot is restarting",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        const runtime = ManagedRuntime.make(RedisStore.layer({ maxUserQueue: 1, redis: redisUrl, prefix }))
        const queue = yield* Effect.promise(() => runtime.runPromise(QueueManager.QueueManager))
        const api = yield* startBotApi
        const bot = new Bot("42:TEST", { botInfo, client: { apiRoot: api.apiRoot } })
        const { entered, inHandler, finish, gate } = handlerGate()
        let handled = 0
        const refused: Array<string> = []
        bot.use(
          QueueGrammy.middleware(runtime, {
            slotOptions: { onFull: "wait" },
            onRefused: (ctx, refusal) => void refused.push(`${ctx.update.update_id}: ${refusal._tag}`)
          })
        )
        bot.use(async () => {
          entered()
          await gate
          handled++
        })
        const outcome = (p: Promise<void>) =>
          p.then(
            () => "ended",
            (error: unknown) => `threw ${error instanceof BotError ? String(error.error) : String(error)}`
          )
        const [first, second] = [privateMessage(7), privateMessage(7)]
        const running = outcome(bot.handleUpdate(first))
        yield* Effect.promise(() => inHandler)
        const waiting = outcome(bot.handleUpdate(second))
        yield* Effect.promise(() => runtime.runPromise(Effect.repeat(queue.stats, { until: (s) => s.waiting === 1 })))
        // closing waits for the update running (its chain cannot be stopped)
        const disposed = runtime.dispose()
        expect(yield* Effect.promise(() => waiting)).toBe("ended")
        finish()
        yield* Effect.promise(() => disposed)
        expect(yield* Effect.promise(() => running)).toBe("ended")
        expect(handled).toBe(1)
        // the update waiting is refused as a shutdown refuses; the one handled is not
        expect(refused).toEqual([`${second.update_id}: QueueShutdown`])
      })
  )
})
