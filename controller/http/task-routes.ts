/** Tasks on the operator plane (PROTOCOL §5): submit, list, show, cancel. */
import type { FastifyInstance } from "fastify";
import type { ControllerContext } from "../context.ts";
import type { SubmitTask } from "../domain/tasks.ts";
import type { TaskStatus } from "../store/task-types.ts";
import { idParams, int, labels, noBody, str } from "./schema-parts.ts";
import { idParam, route, who } from "./operator-routes.ts";


const nullable = (t: string) => ({ type: [t, "null"] }) as const;
const taskView = {
  type: "object",
  properties: {
    id: str, kind: str, payload: {}, selector: { type: "object", additionalProperties: str }, status: str,
    attempts: int, max_attempts: int, timeout_s: int, created_at: str, updated_at: str,
    finished_at: nullable("string"), executor_id: nullable("string"), lease_expires_at: nullable("string"),
    result: { type: ["object", "null"], additionalProperties: true }, error: nullable("string"),
  },
} as const;
const STATUSES = ["queued", "leased", "succeeded", "failed", "cancelled"];

export const submitTaskSchema = {
  body: {
    type: "object",
    required: ["kind", "payload"],
    properties: {
      kind: { type: "string", pattern: "^[a-z][a-z0-9_.-]{0,63}$" },
      payload: {},
      selector: labels,
      timeout_s: { type: "integer", minimum: 1, maximum: 7 * 86400 },
      max_attempts: { type: "integer", minimum: 1, maximum: 100 },
    },
  },
  response: { 201: taskView },
} as const;

export async function taskRoutes(app: FastifyInstance, ctx: ControllerContext): Promise<void> {
  app.post("/api/v1/tasks", { config: route("tasks:write"), schema: submitTaskSchema }, async (request, reply) =>
    reply.code(201).send(await ctx.tasks.submit(request.body as SubmitTask, who(request))),
  );

  app.get(
    "/api/v1/tasks",
    {
      config: route("tasks:read"),
      schema: {
        querystring: {
          type: "object",
          properties: { status: { type: "string", enum: STATUSES }, limit: { type: "string", pattern: "^[0-9]{1,4}$" } },
        },
        response: { 200: { type: "object", properties: { tasks: { type: "array", items: taskView } } } },
      },
    },
    async (request) => {
      const q = request.query as { status?: TaskStatus; limit?: string };
      const limit = Math.min(Math.max(Number(q.limit ?? 100), 1), 1000);
      return { tasks: await ctx.tasks.list(q.status, limit) };
    },
  );

  app.get("/api/v1/tasks/:id", { config: route("tasks:read"), schema: { params: idParams, response: { 200: taskView } } }, async (request) =>
    ctx.tasks.show(idParam(request)),
  );

  app.post(
    "/api/v1/tasks/:id/cancel",
    { config: route("tasks:write"), schema: { params: idParams, body: noBody, response: { 200: taskView } } },
    async (request) => ctx.tasks.cancel(idParam(request), who(request)),
  );
}
