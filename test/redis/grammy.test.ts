import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Bot, BotError } from "grammy"
import * as QueueGrammy from "../../src/Grammy.js"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { botInfo, startBotApi } from "../botApiStandIn.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"
import { loseState } from "./helpers.js"

describe("grammY middleware on the Redis store", () => {
  it.scopedLive("a lease lost while the chain runs keeps the slot counted until the chain settles, then throws", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const runtime = yield* Layer.toRuntime(RedisStore.layer({ maxUserQueue: 1, redis: redisUrl, prefix }))
      const queue = yield* QueueManager.QueueManager.pipe(Effect.provide(runtime))
      const api = yield* startBotApi
      const bot = new Bot("42:TEST", { botInfo, client: { apiRoot: api.apiRoot } })
      let entered = () => {}
      const inHandler = new Promise<void>((resolve) => (entered = resolve))
      let finish = () => {}
      const gate = new Promise<void>((resolve) => (finish = resolve))
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
})
