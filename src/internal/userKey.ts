import { Cause, Option, Schema } from "effect"
import type { Effect } from "effect"
import type { Service, UserId } from "../QueueManager.js"
import { invalidUserId } from "./userId.js"

/**
 * What an adapter does with a request or update that has no valid user key: `"allow"` runs it
 * without a slot (unlimited), `"reject"` refuses it with {@link MissingUserKey}, `{ shared }`
 * counts it against one allowance shared by every such request.
 *
 * @since 0.1.0
 */
export type MissingKeyRule = "allow" | "reject" | { readonly shared: UserId }

/**
 * A request or update was refused because no valid user key could be taken from it (the key
 * function gave nothing, or a value that is not a valid user id) and the rule is `"reject"`.
 *
 * @since 0.1.0
 */
export class MissingUserKey extends Schema.TaggedError<MissingUserKey>()("MissingUserKey", {
  /** Why there is no key: `"no key given"`, or what was wrong with the value given. */
  detail: Schema.String
}) {
  override get message(): string {
    return `no valid user key: ${this.detail}`
  }
}

/** The refusals of a slot acquisition, as the core declares them (grows with the core). */
export type SlotRefusal = Effect.Effect.Error<ReturnType<Service["slot"]>>

/** What to do with one request: take a slot of `userId`, run it without a slot, or refuse it. */
export type KeyDecision =
  | { readonly _tag: "Slot"; readonly userId: UserId }
  | { readonly _tag: "Pass" }
  | { readonly _tag: "Refuse"; readonly error: MissingUserKey }

const describe = (value: unknown): string => {
  if (typeof value === "function") return "a function"
  if (typeof value !== "string" && (typeof value !== "object" || value === null)) return String(value)
  try {
    return JSON.stringify(value)
  } catch {
    return String(value)
  }
}

/** Why `value` is not a valid user id (the core's own check and message), or `undefined` when it is one. */
const invalidUserIdMessage = (value: unknown): string | undefined => invalidUserId(value)?.message

/** An `IllegalArgumentException` naming the module, the option and the value. */
export const badOption = (module: string, option: string, expected: string, value: unknown): never => {
  throw new Cause.IllegalArgumentException(`${module}: ${option} must be ${expected}, got ${describe(value)}`)
}

/** Checks that an option, if given, is a function; throws naming the option and the value otherwise. */
export const checkFunction = (module: string, option: string, value: unknown, required = false): void => {
  if (typeof value === "function" || (!required && value === undefined)) return
  badOption(module, option, "a function", value)
}

/** Checks a {@link MissingKeyRule}, throwing naming the option and the value when it is not one. */
export const checkRule = (module: string, rule: unknown): MissingKeyRule | undefined => {
  if (rule === undefined || rule === "allow" || rule === "reject") return rule
  const shared = typeof rule === "object" && rule !== null ? (rule as { shared?: unknown }).shared : undefined
  if (shared !== undefined && invalidUserIdMessage(shared) === undefined) return rule as MissingKeyRule
  return badOption(module, "onMissingKey", `"allow", "reject" or { shared: <a valid user id> }`, rule)
}

/** Decides what to do with a key a key function gave (`undefined`, `None` or an invalid value = no key). */
export const decide = (rule: MissingKeyRule, given: unknown): KeyDecision => {
  const key = Option.isOption(given) ? Option.getOrUndefined(given) : given
  const problem = key === undefined || key === null ? "no key given" : invalidUserIdMessage(key)
  if (problem === undefined) return { _tag: "Slot", userId: key as UserId }
  if (rule === "allow") return { _tag: "Pass" }
  if (rule === "reject") return { _tag: "Refuse", error: new MissingUserKey({ detail: problem }) }
  return { _tag: "Slot", userId: rule.shared }
}
