-- Access analytics over the exported audit trail: the figures GET /analytics
-- computes, one row per (figure, key), named as in its answer. Runs as is on
-- Athena (Glue table audit_events) and on DuckDB (the same JSON lines).
-- Parameters: 1 = first day (inclusive), 2 = last day (exclusive), 'YYYY-MM-DD'.
WITH params AS (
  SELECT CAST(? AS VARCHAR) AS from_day, CAST(? AS VARCHAR) AS to_day
),
created AS (
  SELECT request_id, entitlement, requester, created_at_ms
  FROM audit_events
  WHERE action = 'created'
),
ev AS (
  SELECT e.action, e.actor, e.to_status, e.code, e.at_ms, e.request_id,
         e.granted_at_ms, e.expires_at_ms, e.duration_secs,
         coalesce(c.entitlement, e.entitlement) AS ent,
         coalesce(c.requester, e.requester) AS who,
         c.created_at_ms,
         split_part(e.actor, ' via ', 1) AS person
  FROM audit_events e
  CROSS JOIN params p
  LEFT JOIN created c ON c.request_id = e.request_id
  WHERE e.day >= p.from_day AND e.day < p.to_day
),
known AS (
  SELECT * FROM ev WHERE ent IS NOT NULL
),
grants AS (
  SELECT request_id, ent, granted_at_ms, expires_at_ms, at_ms
  FROM known
  WHERE action = 'transition' AND to_status = 'GRANTED'
),
windows AS (
  SELECT g.ent,
         g.granted_at_ms,
         -- extensions move expiresAt; a revoke or the end ends it earlier
         greatest(g.expires_at_ms, coalesce(max(x.expires_at_ms), g.expires_at_ms)) AS expires_ms,
         min(CASE WHEN x.action = 'transition'
                   AND x.to_status IN ('EXPIRED', 'REVOKED', 'FAILED')
                   AND x.at_ms >= g.at_ms THEN x.at_ms END) AS ended_ms
  FROM grants g
  LEFT JOIN known x ON x.request_id = g.request_id
   AND (x.action = 'extension' OR x.action = 'transition')
  GROUP BY g.request_id, g.ent, g.granted_at_ms, g.expires_at_ms
),
approvals AS (
  SELECT person, at_ms, created_at_ms
  FROM known
  WHERE actor NOT LIKE 'system:%'
    AND (action = 'decision' OR (action = 'transition' AND to_status = 'APPROVED'))
)
SELECT 'patterns.requestsByEntitlement' AS figure, ent AS key, CAST(count(*) AS DOUBLE) AS value
  FROM known WHERE action = 'created' GROUP BY 2
UNION ALL SELECT 'patterns.requestsByRequester', who, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'created' GROUP BY 2
UNION ALL SELECT 'patterns.durationAskedHours', ent, round(sum(duration_secs) / 3600.0, 2)
  FROM known WHERE action = 'created' GROUP BY 2
UNION ALL SELECT 'usage.grants', ent, CAST(count(*) AS DOUBLE)
  FROM grants GROUP BY 2
UNION ALL SELECT 'usage.elevatedHours', ent,
  round(sum(greatest(least(coalesce(ended_ms, expires_ms), expires_ms) - granted_at_ms, 0)) / 3600000.0, 2)
  FROM windows GROUP BY 2
UNION ALL SELECT 'usage.credentialsIssued', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'credentials-issued' GROUP BY 2
UNION ALL SELECT 'usage.consoleSignins', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'console-signin' GROUP BY 2
UNION ALL SELECT 'usage.extensions', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'extension' AND expires_at_ms IS NOT NULL GROUP BY 2
UNION ALL SELECT 'usage.earlyRevokes', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'transition' AND to_status = 'REVOKED' GROUP BY 2
UNION ALL SELECT 'usage.approvals', CASE WHEN actor LIKE 'system:%' THEN 'auto' ELSE 'human' END,
  CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'transition' AND to_status = 'APPROVED' GROUP BY 2
UNION ALL SELECT 'security.denied', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'transition' AND to_status = 'DENIED' GROUP BY 2
UNION ALL SELECT 'security.approvalTimeouts', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'transition' AND to_status = 'APPROVAL_TIMED_OUT' GROUP BY 2
UNION ALL SELECT 'security.ineligible', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'rejected' AND code = 'not_eligible' GROUP BY 2
UNION ALL SELECT 'security.selfApproval', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'rejected' AND code = 'self_approval' GROUP BY 2
UNION ALL SELECT 'security.notApprover', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'rejected' AND code = 'not_approver' GROUP BY 2
UNION ALL SELECT 'security.revocations', person, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'transition' AND to_status = 'REVOKED' GROUP BY 2
UNION ALL SELECT 'security.reconcilerDrift', ent, CAST(count(*) AS DOUBLE)
  FROM known WHERE action = 'note' AND actor = 'system:reconciler' GROUP BY 2
UNION ALL SELECT 'security.rubberStamping', person, CAST(count(*) AS DOUBLE)
  FROM approvals
  WHERE floor((at_ms - created_at_ms) / 1000.0) <= 60 GROUP BY 2
UNION ALL SELECT 'security.approverConcentration', person, CAST(count(*) AS DOUBLE)
  FROM approvals GROUP BY 2
