// Live events (PROTOCOL §10.1): mint a ticket with the bearer token, open the socket, authenticate
// in the first frame, reconnect with backoff. onState gets "live" or "polling" (the pages poll
// /api/v1 while the stream is unavailable).
import { api } from "./api.js";

export function connectEvents(onEvent, onState) {
  let ws = null;
  let stopped = false;
  let delay = 1000;
  let timer = null;

  const retry = () => {
    onState("polling");
    if (stopped) return;
    timer = setTimeout(open, delay);
    delay = Math.min(delay * 2, 30_000);
  };

  async function open() {
    if (stopped) return;
    let ticket;
    try {
      ticket = (await api("POST", "/ws-tickets")).ticket;
    } catch {
      return retry();
    }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    try {
      ws = new WebSocket(`${proto}//${location.host}/api/v1/events`);
    } catch {
      return retry();
    }
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", ticket }));
    ws.onmessage = (m) => {
      let f;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      if (f.type === "auth-ok") {
        delay = 1000;
        onState("live");
      } else if (f.type === "auth-failed") {
        ws.close();
      } else if (f.type === "event") {
        onEvent(f);
      }
    };
    ws.onclose = () => {
      ws = null;
      retry();
    };
  }

  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    ws?.close();
  };
}
