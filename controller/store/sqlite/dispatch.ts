/**
 * Lease dispatch in SQL, so its cost follows the tasks that can match an executor,
 * not the backlog (migration 4 builds the index it walks).
 *
 * A task matches when its selector is a subset of the executor's labels. Tasks with
 * an empty selector match everyone: the oldest come straight off the
 * (status, selector_size) index. For the others, each (key, value) label of the
 * executor finds the queued tasks whose selector holds that pair; a task whose
 * selector_size pairs were all found matches, counted from the pair index alone. So a
 * backlog of tasks that share no pair with an executor costs that executor nothing,
 * and one whose tasks share some pairs but not all costs an index entry per shared
 * pair, never a task read or a JSON parse.
 */

/** Free slots of an executor that may take work now (no row: it may not). */
export const ELIGIBLE_EXECUTOR_SQL = `
  SELECT e.capacity - (SELECT COUNT(*) FROM tasks t WHERE t.executor_id = e.id AND t.status = 'leased') AS free
  FROM executors e
  WHERE e.id = @executorId AND e.epoch = @epoch AND e.revoked_at IS NULL AND e.drain = 0
    AND e.status = 'ready' AND e.last_seen_at >= @aliveSince`;

/**
 * Ids of the oldest `limit` queued tasks the executor's labels (read from its row)
 * satisfy. CROSS JOIN fixes the join order — labels, then their pairs, then the
 * matching tasks — so the planner can never start from the queue, whatever its
 * statistics say (test/store/sqlite.test.ts pins the plan).
 */
export const LEASE_CANDIDATES_SQL = `
  WITH plain AS (
    SELECT rowid AS pos, id FROM tasks WHERE status = 'queued' AND selector_size = 0 ORDER BY rowid LIMIT @limit
  ),
  matched AS (
    SELECT t.rowid AS pos, t.id FROM (
      SELECT p.task_id
      FROM executors e CROSS JOIN json_each(e.labels) l CROSS JOIN task_selector_pairs p
      WHERE e.id = @executorId AND p.key = l.key AND p.value = l.value
      GROUP BY p.task_id
      HAVING COUNT(*) = MAX(p.selector_size)
    ) m CROSS JOIN tasks t
    WHERE t.id = m.task_id AND t.status = 'queued'
  )
  SELECT id FROM (SELECT pos, id FROM plain UNION ALL SELECT pos, id FROM matched)
  ORDER BY pos LIMIT @limit`;
