/**
 * The operator console (PROTOCOL §10.2): static files from ui/, served to anyone at `/ui/`
 * (they carry no secret; every datum comes from `/api/v1` with the bearer token the page
 * keeps for its tab). Read once at mount, served from memory under a strict
 * Content-Security-Policy: no inline script, nothing from another origin. Left out of the
 * OpenAPI document (not an API operation). `/ui` redirects to `/ui/`; `/api/v1` never redirects.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const UI_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

const UI_DIR = fileURLToPath(new URL("../../ui/", import.meta.url));
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};
/** Every file the console has; anything else under /ui/ is a 404 (no directory walking). */
export const UI_FILES = ["index.html", "app.js", "api.js", "events.js", "dom.js", "pages.js", "style.css"] as const;

function load(): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of UI_FILES) {
    const ext = name.slice(name.lastIndexOf(".") + 1);
    files.set(name, { body: readFileSync(UI_DIR + name), type: TYPES[ext]! });
  }
  return files;
}

function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header("content-security-policy", UI_CSP)
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .header("x-frame-options", "DENY")
    .header("cache-control", "no-cache");
}

export async function uiRoutes(scope: FastifyInstance): Promise<void> {
  const files = load();
  // Public plane (like /healthz); swaggerTransform false + hide keeps the console out of the OpenAPI document.
  const config = { route: { plane: "public" as const }, swaggerTransform: false as const };
  const schema = { hide: true };
  const send = (reply: FastifyReply, name: string) => {
    const f = files.get(name);
    if (!f) return reply.code(404).send({ error: { code: "NOT_FOUND", message: `no file /ui/${name}` } });
    return secure(reply).type(f.type).send(f.body);
  };
  scope.get("/ui", { config, schema }, async (_request, reply) => reply.redirect("/ui/", 301));
  scope.get("/ui/", { config, schema }, async (_request, reply) => send(reply, "index.html"));
  scope.get<{ Params: { file: string } }>("/ui/:file", { config, schema }, async (request, reply) => send(reply, request.params.file));
}
