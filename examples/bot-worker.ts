/**
 * One worker process of the distributed simulation (started by `npm start` when `REDIS_URL`
 * is set): the bot on the Redis store, its report printed as JSON.
 */
import { Effect } from "effect"
import { runWorker } from "./distributed.js"
import { botLoad } from "./simulation.js"

Effect.runPromise(runWorker(botLoad)).catch((error: unknown) => {
  console.error(String(error))
  process.exitCode = 1
})
