-- MS5.0's dashboards, as the post-flight benchmarks time them: each query's p95 must stay under
-- [benchmarks] max_dashboard_query_ms of plan.toml, and a query with a window must scan only the chunks
-- that overlap it.
--
-- One query per block: `-- name: <what the dashboard shows>`, then `-- window: <interval> of
-- <table>.<time column>` when it reads the newest part of a table (its SQL compares that column with
-- %(lo)s and %(hi)s, the window's bounds: the newest value in the table and that much before it), then
-- one SELECT. Tables without a schema are found in the plan's schema first. Write a literal % as %%.

-- name: latest values per equipment
-- window: 1 hour of metric_hist.ts
SELECT d.equipment_code, d.metric_key, h.ts, h.value_bool, h.value_int, h.value_real, h.value_text
  FROM metric_def d
 CROSS JOIN LATERAL (SELECT m.ts, m.value_bool, m.value_int, m.value_real, m.value_text
                       FROM metric_hist m
                      WHERE m.metric_def_id = d.id AND m.ts > %(lo)s AND m.ts <= %(hi)s
                      ORDER BY m.ts DESC LIMIT 1) h
 WHERE d.enabled IS NOT FALSE
 ORDER BY d.equipment_code, d.metric_key;

-- name: OEE per line over a shift
-- window: 8 hours of oee_calculations.calculation_time
SELECT l.line_code, count(*) AS samples, avg(o.oee) AS oee, avg(o.availability) AS availability,
       avg(o.performance) AS performance, avg(o.quality) AS quality, sum(o.good_parts) AS good_parts
  FROM oee_calculations o JOIN production_lines l ON l.id = o.line_id
 WHERE o.calculation_time > %(lo)s AND o.calculation_time <= %(hi)s
 GROUP BY l.line_code ORDER BY l.line_code;

-- name: energy per hour over a day
-- window: 1 day of energy_consumption.consumption_time
SELECT time_bucket(INTERVAL '1 hour', e.consumption_time) AS hour, e.equipment_code,
       sum(e.energy_consumption_kwh) AS kwh, avg(e.power_consumption_kw) AS avg_kw
  FROM energy_consumption e
 WHERE e.consumption_time > %(lo)s AND e.consumption_time <= %(hi)s
 GROUP BY 1, 2 ORDER BY 1, 2;

-- name: faults active
SELECT * FROM public.v_faults_active ORDER BY equipment_code, bit_index;
