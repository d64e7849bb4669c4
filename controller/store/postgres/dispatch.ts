/**
 * Lease dispatch in SQL on PostgreSQL, as on SQLite (controller/store/sqlite/dispatch.ts):
 * the cost follows the tasks that can match an executor, not the backlog. Tasks with an
 * empty selector come straight off the (status, selector_size, seq) index; the others are
 * found through the (key, value) pairs of the executor's labels in task_selector_pairs, a
 * task matching when all its selector_size pairs were found.
 *
 * Replicas lease concurrently: candidates are locked FOR UPDATE SKIP LOCKED, so two
 * lease calls never wait on or take the same task; a row another transaction changed
 * meanwhile is re-checked (still queued?) before it is locked.
 */

/**
 * Locks the executor's row (serializing lease calls of one executor, whichever replica
 * makes them, so its capacity holds) and returns its capacity when it may take work now.
 * $1 executor, $2 epoch, $3 aliveSince.
 */
export const LOCK_ELIGIBLE_EXECUTOR_SQL = `
  SELECT capacity FROM executors
  WHERE id = $1 AND epoch = $2 AND revoked_at IS NULL AND NOT drain AND status = 'ready' AND last_seen_at >= $3
  FOR NO KEY UPDATE`;

/**
 * Ids of the oldest queued tasks the executor's labels satisfy, at most
 * min($2 max, $3 capacity − leases it holds), locked. Runs after LOCK_ELIGIBLE_EXECUTOR_SQL
 * in the same transaction, so its count sees every lease committed before that lock.
 */
export const LEASE_CANDIDATES_SQL = `
  WITH lim AS (
    SELECT GREATEST(0, LEAST($2::bigint, $3::bigint - (SELECT count(*) FROM tasks WHERE executor_id = $1 AND status = 'leased'))) AS n
  ),
  plain AS (
    SELECT seq, id FROM tasks WHERE status = 'queued' AND selector_size = 0
    ORDER BY seq LIMIT (SELECT n FROM lim)
    FOR UPDATE SKIP LOCKED
  ),
  matched AS (
    SELECT t.seq, t.id FROM tasks t
    WHERE t.status = 'queued' AND t.id IN (
      SELECT p.task_id
      FROM executors e CROSS JOIN LATERAL jsonb_each_text(e.labels::jsonb) l
        CROSS JOIN LATERAL (
          -- OFFSET 0 keeps this a per-label index probe: flattened, the planner may hash-join
          -- the whole pair table, and the cost would follow the backlog again.
          SELECT task_id, selector_size FROM task_selector_pairs WHERE key = l.key AND value = l.value OFFSET 0
        ) p
      WHERE e.id = $1
      GROUP BY p.task_id
      HAVING count(*) = max(p.selector_size)
    )
    ORDER BY t.seq LIMIT (SELECT n FROM lim)
    FOR UPDATE OF t SKIP LOCKED
  )
  SELECT id FROM (SELECT seq, id FROM plain UNION ALL SELECT seq, id FROM matched) c
  ORDER BY seq LIMIT (SELECT n FROM lim)`;
