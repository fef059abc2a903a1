/**
 * `npm start`: the simulated bot. On the in-memory default in one process; with `REDIS_URL`
 * set, as three worker processes sharing Redis. `MAX_USER_QUEUE_SIZE` sets the limit.
 */
import { Console, Effect } from "effect"
import { QueueManager } from "../src/index.js"
import { runDistributed } from "./distributed.js"
import { runMain } from "./main.js"
import { botLoad, formatReport, limitsHeld, simulate } from "./simulation.js"

const workers = 3
const distributed = process.env["REDIS_URL"] !== undefined && process.env["REDIS_URL"] !== ""

const program = (
  distributed
    ? Console.log(`Redis store at ${process.env["REDIS_URL"]}: ${workers} worker processes share the limits`).pipe(
        Effect.zipRight(runDistributed(workers))
      )
    : simulate(botLoad).pipe(Effect.provide(QueueManager.layerConfig()))
).pipe(
  Effect.tap((report) => Console.log(formatReport(report))),
  Effect.flatMap((report) => (limitsHeld(report) ? Effect.void : Effect.fail("limits did not hold")))
)

runMain(program)
