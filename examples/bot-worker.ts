/**
 * One worker process of the distributed simulation (started by `npm start` when `REDIS_URL`
 * is set): the bot on the Redis store, its report printed as JSON.
 */
import { runWorker } from "./distributed.js"
import { runMain } from "./main.js"
import { botLoad } from "./simulation.js"

runMain(runWorker(botLoad))
