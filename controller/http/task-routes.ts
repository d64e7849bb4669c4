/** Tasks on the operator plane (PROTOCOL §5): submit, list, show, cancel. */
import type { FastifyInstance } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { TASK_LIST_DEFAULT_LIMIT, TASK_LIST_MAX_LIMIT, operatorRouteSchemas as schemas } from "../../shared/wire/operator.ts";
import type { ControllerContext } from "../context.ts";
import { route, who } from "./operator-routes.ts";

export async function taskRoutes(scope: FastifyInstance, ctx: ControllerContext): Promise<void> {
  const app = scope.withTypeProvider<TypeBoxTypeProvider>();

  app.post("/api/v1/tasks", { config: route("tasks:write"), schema: schemas.submitTask }, async (request, reply) =>
    reply.code(201).send(await ctx.tasks.submit(request.body, who(request))),
  );

  app.get("/api/v1/tasks", { config: route("tasks:read"), schema: schemas.listTasks }, async (request) => {
    const { status, limit } = request.query;
    const n = Math.min(Math.max(Number(limit ?? TASK_LIST_DEFAULT_LIMIT), 1), TASK_LIST_MAX_LIMIT);
    return { tasks: await ctx.tasks.list(status, n) };
  });

  app.get("/api/v1/tasks/:id", { config: route("tasks:read"), schema: schemas.showTask }, async (request) => ctx.tasks.show(request.params.id));

  app.post("/api/v1/tasks/:id/cancel", { config: route("tasks:write"), schema: schemas.cancelTask }, async (request) =>
    ctx.tasks.cancel(request.params.id, who(request)),
  );
}
