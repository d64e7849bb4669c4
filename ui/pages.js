// The console's pages. Each mounts its static part once (forms, a secret shown once) and
// returns a refresh function that re-reads /api/v1 and replaces only the data part.
import { api } from "./api.js";
import { ago, h, labels, status, table } from "./dom.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function act(ctx, label, cls, fn, attrs = {}) {
  return h("button", { type: "button", class: cls, ...attrs, onclick: async (e) => {
    e.target.disabled = true;
    try {
      await fn();
      ctx.flash("");
    } catch (err) {
      ctx.flash(`${label}: ${err.message}`);
    }
    await ctx.refresh();
  } }, label);
}

export const fleet = {
  title: "Fleet", needs: "executors:read", events: ["executor."],
  mount(root, ctx) {
    const data = h("div");
    root.append(h("h1", {}, "Fleet"), data);
    return async () => {
      const { executors } = await api("GET", "/executors");
      data.replaceChildren(table(["Name", "ID", "Status", "Epoch", "Labels", "Capacity", "Certificate expires", "Last seen", ""],
        executors.map((x) => h("tr", { "data-executor-id": x.id },
          h("td", {}, x.name), h("td", { class: "mono" }, x.id), h("td", { class: "status" }, status(x.status)),
          h("td", {}, x.epoch), h("td", {}, labels(x.labels)), h("td", {}, x.capacity),
          h("td", { title: x.cert_expires_at }, x.cert_expires_at), h("td", { title: x.last_seen_at ?? "" }, ago(x.last_seen_at)),
          h("td", {},
            ctx.can("executors:drain") && !x.revoked && !x.drain
              ? act(ctx, "Drain", "", () => api("POST", `/executors/${encodeURIComponent(x.id)}/drain`), { "data-action": "drain" }) : null,
            " ",
            ctx.can("executors:revoke") && !x.revoked
              ? act(ctx, "Revoke", "danger", () => confirmed(`Revoke ${x.name}?`) && api("POST", `/executors/${encodeURIComponent(x.id)}/revoke`), { "data-action": "revoke" }) : null)))));
    };
  },
};

function confirmed(q) {
  if (!window.confirm(q)) throw new Error("not confirmed");
  return true;
}

function parseLabels(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i < 1) throw new Error(`label "${part}" is not k=v`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

export const tasks = {
  title: "Tasks", needs: "tasks:read", events: ["task."],
  mount(root, ctx) {
    const data = h("div");
    root.append(h("h1", {}, "Tasks"));
    if (ctx.can("tasks:write")) {
      const argv = h("input", { name: "argv", size: 40, placeholder: "echo hello", required: true });
      const selector = h("input", { name: "selector", size: 20, placeholder: "pool=linux" });
      const timeout = h("input", { name: "timeout", type: "number", min: 1, placeholder: "300" });
      root.append(h("form", { id: "submit-task", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const body = { kind: "command", payload: { argv: argv.value.trim().split(/\s+/).filter(Boolean) } };
          const sel = parseLabels(selector.value);
          if (Object.keys(sel).length) body.selector = sel;
          if (timeout.value) body.timeout_s = Number(timeout.value);
          await api("POST", "/tasks", body);
          argv.value = "";
          ctx.flash("");
        } catch (err) {
          ctx.flash(`Submit: ${err.message}`);
        }
        await ctx.refresh();
      } }, h("label", {}, "Command (argv, space separated)", argv), h("label", {}, "Selector", selector),
      h("label", {}, "Timeout (s)", timeout), h("button", { type: "submit", class: "primary" }, "Submit")));
    }
    root.append(data);
    return async () => {
      const { tasks: list } = await api("GET", "/tasks?limit=100");
      data.replaceChildren(table(["ID", "Status", "Command", "Executor", "Attempts", "Updated", "Exit", "Output (tail)", ""],
        list.map((t) => {
          const r = t.result ?? {};
          const argv = Array.isArray(t.payload?.argv) ? t.payload.argv.join(" ") : JSON.stringify(t.payload);
          return h("tr", { "data-task-id": t.id },
            h("td", { class: "mono" }, t.id), h("td", { class: "status" }, status(t.status)), h("td", { class: "mono" }, `${t.kind}: ${argv}`),
            h("td", { class: "mono" }, t.executor_id ?? ""), h("td", {}, `${t.attempts}/${t.max_attempts}`), h("td", { title: t.updated_at }, ago(t.updated_at)),
            h("td", {}, r.exit_code ?? r.signal ?? ""),
            h("td", {}, h("pre", { class: "stdout" }, r.stdout_tail ?? ""), r.stderr_tail ? h("pre", { class: "stderr" }, r.stderr_tail) : null,
              t.error ? h("pre", { class: "task-error" }, t.error) : null),
            h("td", {}, ctx.can("tasks:write") && !TERMINAL.has(t.status)
              ? act(ctx, "Cancel", "danger", () => api("POST", `/tasks/${encodeURIComponent(t.id)}/cancel`), { "data-action": "cancel" }) : null));
        })));
    };
  },
};

async function caFingerprint() {
  try {
    const fp = (await api("GET", "/ca")).cas.find((c) => c.state === "active")?.fingerprint_sha256;
    return fp ? (/^sha256:/i.test(fp) ? fp : `SHA256:${fp}`) : null;
  } catch {
    return null;
  }
}

export const enrollment = {
  title: "Enrollment tokens", needs: "enrollment_tokens:read", events: ["executor.registered"],
  mount(root, ctx) {
    const data = h("div");
    const secret = h("div");
    root.append(h("h1", {}, "Enrollment tokens"));
    if (ctx.can("enrollment_tokens:write")) {
      const ttl = h("input", { name: "ttl", type: "number", min: 1, value: 3600 });
      const uses = h("input", { name: "max_uses", type: "number", min: 1, value: 1 });
      const lbl = h("input", { name: "labels", size: 20, placeholder: "pool=linux" });
      root.append(h("form", { id: "create-enrollment", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const body = { ttl_s: Number(ttl.value), max_uses: Number(uses.value) };
          const l = parseLabels(lbl.value);
          if (Object.keys(l).length) body.labels = l;
          const created = await api("POST", "/enrollment-tokens", body);
          const fp = await caFingerprint();
          const join = `umask 077; printf '%s' '${created.token}' > tether.token && tether executor run --controller ${location.origin}` +
            ` ${fp ? `--ca-fingerprint ${fp}` : "--ca-file ca.pem"} --state-dir /var/lib/tether/executor --token-file tether.token`;
          // Shown once: the controller keeps only a hash; leaving the page forgets it.
          secret.replaceChildren(h("div", { class: "secret" },
            h("strong", {}, "Copy this now: it is not shown again."),
            h("p", {}, "Token: ", h("code", { class: "mono", id: "new-token" }, created.token)),
            h("p", {}, "Join command:"), h("pre", { id: "join-command" }, join)));
          ctx.flash("");
        } catch (err) {
          ctx.flash(`Create: ${err.message}`);
        }
        await ctx.refresh();
      } }, h("label", {}, "TTL (s)", ttl), h("label", {}, "Max uses", uses), h("label", {}, "Labels", lbl),
      h("button", { type: "submit", class: "primary" }, "Create token")));
    }
    root.append(secret, data);
    return async () => {
      const { enrollment_tokens: list } = await api("GET", "/enrollment-tokens");
      data.replaceChildren(table(["ID", "State", "Uses", "Labels", "Created", "Expires", ""],
        list.map((t) => h("tr", { "data-token-id": t.id },
          h("td", { class: "mono" }, t.id), h("td", {}, status(t.state)), h("td", {}, `${t.uses}/${t.max_uses}`), h("td", {}, labels(t.labels)),
          h("td", {}, t.created_at), h("td", {}, t.expires_at),
          h("td", {}, ctx.can("enrollment_tokens:write") && t.state === "active"
            ? act(ctx, "Revoke", "danger", () => api("DELETE", `/enrollment-tokens/${encodeURIComponent(t.id)}`), { "data-action": "revoke" }) : null)))));
    };
  },
};

export const trust = {
  title: "Trust", needs: "trust:read", events: ["ca.", "jwt_key.", "executor."],
  mount(root, ctx) {
    const data = h("div");
    root.append(h("h1", {}, "Trust"));
    if (ctx.can("trust:write")) {
      root.append(h("p", {},
        act(ctx, "Rotate CA (prepare)", "", () => confirmed("Prepare a new CA?") && api("POST", "/ca/rotate"), { "data-action": "rotate-ca" }), " ",
        act(ctx, "Activate prepared CA", "", () => confirmed("Activate the prepared CA?") && api("POST", "/ca/activate", {}), { "data-action": "activate-ca" }), " ",
        act(ctx, "Rotate JWT key", "", () => confirmed("Rotate the JWT signing key?") && api("POST", "/jwt-keys/rotate"), { "data-action": "rotate-jwt" })));
    }
    root.append(data);
    return async () => {
      const t = await api("GET", "/ca");
      data.replaceChildren(
        h("p", {}, "Trust bundle version: ", h("strong", {}, t.trust_bundle_version)),
        h("h2", {}, "Certificate authorities"),
        table(["Fingerprint (SHA-256)", "State", "Not before", "Not after", "Adopted by", "Pending"],
          t.cas.map((c) => h("tr", {}, h("td", { class: "mono" }, c.fingerprint_sha256), h("td", {}, status(c.state)),
            h("td", {}, c.not_before), h("td", {}, c.not_after), h("td", {}, c.adopted_by),
            h("td", { class: "mono", title: c.pending.join("\n") }, c.pending.length ? `${c.pending.length}: ${c.pending.slice(0, 3).join(", ")}${c.pending.length > 3 ? "…" : ""}` : "none")))),
        h("h2", {}, "JWT signing keys"),
        table(["Key ID", "State", "Created"], t.jwt_keys.map((k) => h("tr", {}, h("td", { class: "mono" }, k.kid), h("td", {}, status(k.state)), h("td", {}, k.created_at)))));
    };
  },
};

export const audit = {
  title: "Audit log", needs: "audit:read", events: [""],
  mount(root) {
    const data = h("div");
    root.append(h("h1", {}, "Audit log"), data);
    return async () => {
      const { events } = await api("GET", "/audit?limit=200");
      data.replaceChildren(table(["Time", "Event", "Details"],
        [...events].reverse().map(({ time, event, ...rest }) =>
          h("tr", {}, h("td", {}, time), h("td", { class: "mono" }, event), h("td", {}, h("pre", {}, JSON.stringify(rest)))))));
    };
  },
};

export const PAGES = { fleet, tasks, enrollment, trust, audit };
