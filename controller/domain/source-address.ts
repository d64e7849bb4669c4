/**
 * The unit every per-source bound counts (the /register rate limit, audit aggregation):
 * an IPv4 address, or an IPv6 /64 — one host is routinely given a whole /64, so
 * counting single IPv6 addresses would let it rotate through 2^64 of them.
 * IPv4-mapped IPv6 (`::ffff:a.b.c.d`, how a dual-stack listener reports IPv4 clients)
 * counts as the IPv4 address.
 */
import { isIPv4, isIPv6 } from "node:net";

/** The eight 16-bit groups of a valid IPv6 address (zone already removed). */
function ipv6Groups(address: string): number[] {
  // An embedded IPv4 suffix (::ffff:1.2.3.4) is written as its two groups first.
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`);
  const parse = (s: string | undefined) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const [head, tail] = text.split("::");
  const h = parse(head);
  const t = parse(tail);
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}

export function sourceKey(address: string): string {
  if (isIPv4(address)) return address;
  const bare = address.split("%")[0] ?? address;
  if (!isIPv6(bare)) return address;
  const g = ipv6Groups(bare);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const [hi = 0, lo = 0] = g.slice(6);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(":")}::/64`;
}
