import { Effect } from "effect"
import { QueueManager } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"
const prog = Effect.gen(function* () {
  const q = yield* QueueManager.QueueManager
  const t0 = Date.now()
  yield* Effect.forEach(
    Array.from({ length: 30 }),
    (_, i) =>
      q
        .withSlot(1, { onFull: "wait" })(Effect.sleep("2 millis"))
        .pipe(Effect.tap(() => Effect.sync(() => console.log(i, Date.now() - t0)))),
    { concurrency: 10 }
  )
}).pipe(Effect.provide(RedisStore.layer({ maxUserQueue: 3, prefix: "dbg3" + Date.now(), leaseTime: "3 seconds" })))
Effect.runPromise(prog)
