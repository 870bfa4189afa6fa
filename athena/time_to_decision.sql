-- Time from request to a person's decision (APPROVED or DENIED by someone
-- not system:*), p50 and p90 by nearest rank, per entitlement and per
-- approver, as GET /analytics computes patterns.timeToDecision. Runs on
-- Athena and on DuckDB alike.
-- Parameters: 1 = first day (inclusive), 2 = last day (exclusive), 'YYYY-MM-DD'.
WITH params AS (
  SELECT CAST(? AS VARCHAR) AS from_day, CAST(? AS VARCHAR) AS to_day
),
created AS (
  SELECT request_id, entitlement, created_at_ms
  FROM audit_events
  WHERE action = 'created'
),
d AS (
  SELECT c.entitlement AS ent,
         split_part(e.actor, ' via ', 1) AS person,
         CAST(floor((e.at_ms - c.created_at_ms) / 1000.0) AS BIGINT) AS secs
  FROM audit_events e
  CROSS JOIN params p
  JOIN created c ON c.request_id = e.request_id
  WHERE e.day >= p.from_day AND e.day < p.to_day
    AND e.action = 'transition' AND e.to_status IN ('APPROVED', 'DENIED')
    AND e.actor NOT LIKE 'system:%'
),
by_ent AS (
  SELECT ent AS key, secs,
         row_number() OVER (PARTITION BY ent ORDER BY secs) AS rn,
         count(*) OVER (PARTITION BY ent) AS n
  FROM d
),
by_person AS (
  SELECT person AS key, secs,
         row_number() OVER (PARTITION BY person ORDER BY secs) AS rn,
         count(*) OVER (PARTITION BY person) AS n
  FROM d
)
SELECT 'byEntitlement' AS breakdown, key,
       max(n) AS count,
       max(CASE WHEN rn = CAST(ceil(0.5 * n) AS BIGINT) THEN secs END) AS p50_secs,
       max(CASE WHEN rn = CAST(ceil(0.9 * n) AS BIGINT) THEN secs END) AS p90_secs
  FROM by_ent GROUP BY key
UNION ALL
SELECT 'byApprover', key,
       max(n),
       max(CASE WHEN rn = CAST(ceil(0.5 * n) AS BIGINT) THEN secs END),
       max(CASE WHEN rn = CAST(ceil(0.9 * n) AS BIGINT) THEN secs END)
  FROM by_person GROUP BY key
