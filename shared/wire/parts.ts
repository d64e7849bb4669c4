/**
 * Schema pieces every plane uses, defined once. Wire schemas are TypeBox: each is plain
 * JSON Schema (what fastify validates and serializes with, and what the OpenAPI document
 * is made of) and its TypeScript type is inferred from it with `Static`, so a field can
 * not be declared in one place and forgotten in the other.
 */
import { Type, type TSchema, type TUnsafe } from "typebox";
import { EXECUTOR_ID_PATTERN } from "../ids.ts";

export const Str = Type.String();
export const Int = Type.Integer();
export const Bool = Type.Boolean();
/** RFC 3339 UTC time (`2026-01-01T00:00:00Z`). */
export const Time = Type.String();

/** A string enum (`{"type": "string", "enum": […]}`), typed as the union of its values; `examples` end up in the OpenAPI document. */
export function StringEnum<const T extends readonly string[]>(values: T, options: { examples?: T[number][] } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

/** `string | null`, as one JSON-schema type list (cheaper to serialize than anyOf). */
export const NullableStr: TUnsafe<string | null> = Type.Unsafe<string | null>({ type: ["string", "null"] });

/**
 * Text that people read (names, labels): no C0 or C1 control characters and no DEL, so
 * nothing an operator lists can carry a terminal escape sequence (the CLI escapes what
 * it prints anyway).
 */
export const NO_CONTROLS = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/** Executor labels and task selectors: at most 64 string pairs. */
export const Labels: TUnsafe<Record<string, string>> = Type.Unsafe<Record<string, string>>({
  type: "object",
  maxProperties: 64,
  propertyNames: { maxLength: 63, minLength: 1, pattern: NO_CONTROLS },
  additionalProperties: { type: "string", maxLength: 256, pattern: NO_CONTROLS },
});

/** Labels as they are sent back (already validated on the way in). */
export const StringMap: TUnsafe<Record<string, string>> = Type.Unsafe<Record<string, string>>({
  type: "object",
  additionalProperties: { type: "string" },
});

/** A JSON object or null (a task's result). */
export const NullableObject: TUnsafe<Record<string, unknown> | null> = Type.Unsafe<Record<string, unknown> | null>({
  type: ["object", "null"],
  additionalProperties: true,
});

/** Any JSON object (a task result). */
export const AnyObject: TUnsafe<Record<string, unknown>> = Type.Unsafe<Record<string, unknown>>({ type: "object", additionalProperties: true });

export const ExecutorId = Type.String({ pattern: `^${EXECUTOR_ID_PATTERN}$`, examples: ["ex_Q2xWm4RtVb9nK7pZ"] });

/** `:id` path parameters: the id alphabet of PROTOCOL §2. */
export const IdParams = Type.Object({ id: ExecutorId });

/** POST routes that take no body accept none, `null` or any object (fields ignored). */
export const NoBody: TUnsafe<null | Record<string, unknown>> = Type.Unsafe<null | Record<string, unknown>>({
  anyOf: [{ type: "null" }, { type: "object" }],
  examples: [{}],
});

/**
 * Optional body that is an object or absent/null (e.g. create an enrollment token with defaults).
 * The object's `examples` are repeated on the union: the OpenAPI generator reads a body's
 * examples from its top level only.
 */
export function OptionalBody<T extends TSchema>(schema: T) {
  const examples = (schema as { examples?: unknown[] }).examples;
  return Type.Union([Type.Null(), schema], examples ? { examples } : {});
}

/** Every error: `{"error": {"code", "message", …}}` (PROTOCOL §1). */
export const ErrorBody = Type.Object({
  error: Type.Object({ code: Str, message: Str }, { additionalProperties: true }),
});

/** `{}` — the answer of routes that have nothing to say. */
export const Empty = Type.Object({});
