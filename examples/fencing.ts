/**
 * Fencing tokens: how a resource the work writes to refuses a holder whose slot was lost
 * without its knowing (its process was paused longer than its lease, on the Redis store).
 * `npx tsx examples/fencing.ts` runs it on the in-memory store, with `REDIS_URL` set on Redis.
 */
import { Console, Effect } from "effect"
import { QueueManager } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"
import { runMain } from "./main.js"

/**
 * A store that keeps, per key, the highest token it has accepted, and refuses a write carrying
 * a lower one: the same check as `UPDATE ... SET body = $2, fence = $3 WHERE key = $1 AND fence <= $3`.
 */
export class FencedStore {
  private readonly rows = new Map<string, { readonly body: string; readonly fence: number }>()
  /** Writes `body` under `key` unless a later holder (a higher token) wrote already; tells whether it did. */
  write(key: string, body: string, token: number): boolean {
    const row = this.rows.get(key)
    if (row !== undefined && token < row.fence) return false
    this.rows.set(key, { body, fence: token })
    return true
  }
  read(key: string): string | undefined {
    return this.rows.get(key)?.body
  }
}

/**
 * A holder takes chat 7's slot and keeps its token; its slot then ends (here it is released;
 * on Redis a long pause makes it lapse) and a second holder takes the slot and writes. When the
 * first holder writes with its old token, the store refuses it.
 */
export const fencingDemo = (store: FencedStore) =>
  Effect.gen(function* () {
    const queue = yield* QueueManager.QueueManager
    const stale = yield* Effect.scoped(queue.slot(7))
    const fresh = yield* queue.withSlot(7)((slot) => Effect.sync(() => store.write("chat-7", "second", slot.token)))
    const late = store.write("chat-7", "first (stale)", stale.token)
    return { fresh, late, kept: store.read("chat-7") }
  })

const main = fencingDemo(new FencedStore()).pipe(
  Effect.tap(({ fresh, late, kept }) =>
    Console.log(`second holder's write accepted: ${fresh}; stale holder's write accepted: ${late}; kept: ${kept}`)
  ),
  Effect.provide(
    process.env["REDIS_URL"]
      ? RedisStore.layer({ maxUserQueue: 1, redis: process.env["REDIS_URL"], prefix: "fencing-example" })
      : QueueManager.layer({ maxUserQueue: 1 })
  )
)

if (import.meta.url === `file://${process.argv[1]}`) runMain(main)
