-- 009_database_optimization.sql
-- MS5.0 database optimization: performance indexes, the maintenance log, the
-- reporting functions get_line_performance_summary, get_equipment_downtime_summary
-- and get_production_efficiency_metrics, the maintenance functions
-- (refresh_materialized_views, update_table_statistics, maintain_tables,
-- configure_connection_pooling, daily_maintenance), the dashboard materialized
-- views mv_production_dashboard, mv_downtime_summary and mv_oee_summary, and
-- the application roles' privileges on everything created since 002.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed; a function is only dropped and recreated when an older
-- version has different parameter names or defaults, which CREATE OR REPLACE
-- cannot change). Existing materialized views are left as they are.
--
-- The original 009 had partial indexes whose WHERE clause used now() or
-- current_date; PostgreSQL rejects those (index predicates must be immutable)
-- and production never got them. Their purpose, fast access to recent rows, is
-- served here by plain indexes that end in the time column (DESC), or by
-- partial indexes on immutable conditions. The indexes are built inside the
-- file's single transaction (the runner wraps each file). The monitoring views
-- of the original (v_slow_queries needs pg_stat_statements; v_index_usage and
-- v_table_statistics referred to columns that do not exist) are not created.

CREATE TABLE IF NOT EXISTS factory_telemetry.maintenance_log (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    maintenance_type text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    completed_at timestamp with time zone,
    status text NOT NULL DEFAULT 'running'::text,
    notes text,
    created_at timestamp with time zone DEFAULT now()
);

-- Keys and foreign keys, added only when missing. A constraint counts as present
-- when one with the same name (PostgreSQL's default name) or the same definition
-- is already on the table, or, for a primary key, when the table has any primary key.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('factory_telemetry.maintenance_log', 'maintenance_log_pkey', 'PRIMARY KEY (id)')
        ) AS v(tbl, conname, condef)
    LOOP
        IF NOT EXISTS (
            SELECT 1
            FROM pg_constraint pc
            WHERE pc.conrelid = c.tbl::regclass
              AND (pc.conname = c.conname
                   OR pg_get_constraintdef(pc.oid) = c.condef
                   OR (pc.contype = 'p' AND starts_with(c.condef, 'PRIMARY KEY')))
        ) THEN
            EXECUTE 'ALTER TABLE ' || c.tbl || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || c.condef;
            RAISE NOTICE 'added constraint % on %', c.conname, c.tbl;
        END IF;
    END LOOP;
END
$$;

-- Indexes: production lines, schedules and job assignments
CREATE INDEX IF NOT EXISTS idx_production_lines_target_speed
    ON factory_telemetry.production_lines (target_speed) WHERE enabled = true;
CREATE INDEX IF NOT EXISTS idx_production_lines_active
    ON factory_telemetry.production_lines (line_code) WHERE enabled = true;
CREATE INDEX IF NOT EXISTS idx_production_schedules_status_priority
    ON factory_telemetry.production_schedules (status, priority) WHERE status IN ('scheduled', 'in_progress');
CREATE INDEX IF NOT EXISTS idx_production_schedules_active
    ON factory_telemetry.production_schedules (scheduled_start, priority) WHERE status = 'in_progress';
CREATE INDEX IF NOT EXISTS idx_production_dashboard_composite
    ON factory_telemetry.production_schedules (line_id, status, scheduled_start DESC, priority)
    WHERE status IN ('scheduled', 'in_progress');
CREATE INDEX IF NOT EXISTS idx_job_assignments_schedule_status
    ON factory_telemetry.job_assignments (schedule_id, status);
CREATE INDEX IF NOT EXISTS idx_job_assignments_started_at
    ON factory_telemetry.job_assignments (started_at) WHERE started_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_job_dashboard_composite
    ON factory_telemetry.job_assignments (user_id, status, assigned_at DESC)
    WHERE status IN ('assigned', 'accepted', 'in_progress');

-- Indexes: OEE calculations (recent values per line / equipment)
CREATE INDEX IF NOT EXISTS idx_oee_calculations_line_time
    ON factory_telemetry.oee_calculations (line_id, calculation_time DESC);
-- was: (oee) WHERE calculation_time > now() - 24 hours
CREATE INDEX IF NOT EXISTS idx_oee_calculations_oee_value
    ON factory_telemetry.oee_calculations (calculation_time DESC, oee);
-- was: (line_id, calculation_time DESC, oee) WHERE calculation_time > now() - 7 days,
-- and idx_oee_calculations_recent (line_id, oee) WHERE calculation_time > now() - 24 hours
CREATE INDEX IF NOT EXISTS idx_oee_analysis_composite
    ON factory_telemetry.oee_calculations (line_id, calculation_time DESC, oee);

-- Indexes: downtime events
CREATE INDEX IF NOT EXISTS idx_downtime_events_line_category
    ON factory_telemetry.downtime_events (line_id, category, start_time DESC);
CREATE INDEX IF NOT EXISTS idx_downtime_events_equipment_active
    ON factory_telemetry.downtime_events (equipment_code, start_time DESC) WHERE end_time IS NULL;
CREATE INDEX IF NOT EXISTS idx_downtime_events_duration
    ON factory_telemetry.downtime_events (duration_seconds) WHERE duration_seconds > 300;
CREATE INDEX IF NOT EXISTS idx_downtime_events_long
    ON factory_telemetry.downtime_events (line_id, start_time DESC) WHERE duration_seconds > 1800;
-- was: the same columns WHERE start_time > now() - 30 days
CREATE INDEX IF NOT EXISTS idx_downtime_analysis_composite
    ON factory_telemetry.downtime_events (line_id, category, start_time DESC, duration_seconds);

-- Indexes: andon events
CREATE INDEX IF NOT EXISTS idx_andon_events_priority_active
    ON factory_telemetry.andon_events (priority, reported_at DESC) WHERE status IN ('open', 'acknowledged');
CREATE INDEX IF NOT EXISTS idx_andon_events_equipment_active
    ON factory_telemetry.andon_events (equipment_code, status, reported_at DESC) WHERE status IN ('open', 'acknowledged');
CREATE INDEX IF NOT EXISTS idx_andon_events_high_priority
    ON factory_telemetry.andon_events (reported_at DESC, line_id)
    WHERE priority IN ('high', 'critical') AND status IN ('open', 'acknowledged');
-- was: the same columns WHERE reported_at > now() - 7 days
CREATE INDEX IF NOT EXISTS idx_andon_analysis_composite
    ON factory_telemetry.andon_events (line_id, priority, reported_at DESC, status);

-- Indexes: energy, quality, reports, KPIs
-- was: (power_consumption_kw) WHERE consumption_time > now() - 1 hour AND power_consumption_kw > 100
CREATE INDEX IF NOT EXISTS idx_energy_consumption_power_high
    ON factory_telemetry.energy_consumption (consumption_time DESC, power_consumption_kw)
    WHERE power_consumption_kw > 100;
CREATE INDEX IF NOT EXISTS idx_quality_checks_line_result
    ON factory_telemetry.quality_checks (line_id, check_result, check_time DESC);
CREATE INDEX IF NOT EXISTS idx_quality_checks_product_result
    ON factory_telemetry.quality_checks (product_type_id, check_result, check_time DESC);
CREATE INDEX IF NOT EXISTS idx_quality_checks_defect_codes
    ON factory_telemetry.quality_checks USING gin (defect_codes) WHERE check_result = 'fail';
CREATE INDEX IF NOT EXISTS idx_production_reports_date_line
    ON factory_telemetry.production_reports (report_date DESC, line_id);
CREATE INDEX IF NOT EXISTS idx_production_reports_oee_range
    ON factory_telemetry.production_reports (oee_average) WHERE oee_average < 0.8;
-- was: (oee) WHERE kpi_date > current_date - 30 days AND oee < 0.7
CREATE INDEX IF NOT EXISTS idx_production_kpis_oee_low
    ON factory_telemetry.production_kpis (kpi_date DESC, oee) WHERE oee < 0.7;

-- Indexes: equipment configuration and context
CREATE INDEX IF NOT EXISTS idx_equipment_config_line_enabled
    ON factory_telemetry.equipment_config (production_line_id, enabled) WHERE enabled = true;
CREATE INDEX IF NOT EXISTS idx_equipment_config_target_speed
    ON factory_telemetry.equipment_config (target_speed) WHERE enabled = true;
-- was: (equipment_code, "timestamp" DESC) / (production_line_id, "timestamp" DESC)
-- WHERE "timestamp" > now() - 1 hour; context has no "timestamp" column, its
-- update times are updated_at and last_production_update
CREATE INDEX IF NOT EXISTS idx_context_equipment_active
    ON factory_telemetry.context (updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_context_line_active
    ON factory_telemetry.context (production_line_id, last_production_update DESC);

-- Indexes: maintenance log
CREATE INDEX IF NOT EXISTS idx_maintenance_log_type_date
    ON factory_telemetry.maintenance_log (maintenance_type, started_at DESC);

-- Materialized views for the dashboard (refreshed by refresh_materialized_views())
CREATE MATERIALIZED VIEW IF NOT EXISTS factory_telemetry.mv_production_dashboard AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed,
       ps.id AS schedule_id,
       ps.status AS schedule_status,
       ps.priority,
       ps.scheduled_start,
       ps.scheduled_end,
       ps.target_quantity,
       pt.product_code,
       pt.name AS product_name,
       ja.id AS job_id,
       ja.status AS job_status,
       u.username,
       u.first_name,
       u.last_name,
       ja.assigned_at,
       ja.accepted_at,
       ja.started_at,
       ja.completed_at,
       o.oee AS current_oee,
       o.availability AS current_availability,
       o.performance AS current_performance,
       o.quality AS current_quality
FROM factory_telemetry.production_lines pl
LEFT JOIN factory_telemetry.production_schedules ps
       ON ps.line_id = pl.id AND ps.status IN ('scheduled', 'in_progress')
LEFT JOIN factory_telemetry.product_types pt ON pt.id = ps.product_type_id
LEFT JOIN factory_telemetry.job_assignments ja
       ON ja.schedule_id = ps.id AND ja.status IN ('assigned', 'accepted', 'in_progress')
LEFT JOIN factory_telemetry.users u ON u.id = ja.user_id
LEFT JOIN LATERAL (
    SELECT oc.oee, oc.availability, oc.performance, oc.quality
    FROM factory_telemetry.oee_calculations oc
    WHERE oc.line_id = pl.id
    ORDER BY oc.calculation_time DESC
    LIMIT 1
) o ON true
WHERE pl.enabled = true;

CREATE MATERIALIZED VIEW IF NOT EXISTS factory_telemetry.mv_downtime_summary AS
SELECT de.line_id,
       pl.line_code,
       pl.name AS line_name,
       de.equipment_code,
       de.category,
       count(*) AS event_count,
       sum(de.duration_seconds) AS total_duration_seconds,
       avg(de.duration_seconds) AS avg_duration_seconds,
       min(de.start_time) AS first_event,
       max(de.start_time) AS last_event
FROM factory_telemetry.downtime_events de
JOIN factory_telemetry.production_lines pl ON pl.id = de.line_id
WHERE de.start_time > now() - interval '30 days'
GROUP BY de.line_id, pl.line_code, pl.name, de.equipment_code, de.category;

CREATE MATERIALIZED VIEW IF NOT EXISTS factory_telemetry.mv_oee_summary AS
SELECT oc.line_id,
       pl.line_code,
       pl.name AS line_name,
       date(oc.calculation_time) AS calculation_date,
       avg(oc.oee) AS avg_oee,
       avg(oc.availability) AS avg_availability,
       avg(oc.performance) AS avg_performance,
       avg(oc.quality) AS avg_quality,
       count(*) AS calculation_count
FROM factory_telemetry.oee_calculations oc
JOIN factory_telemetry.production_lines pl ON pl.id = oc.line_id
WHERE oc.calculation_time > now() - interval '30 days'
GROUP BY oc.line_id, pl.line_code, pl.name, date(oc.calculation_time);

CREATE INDEX IF NOT EXISTS idx_mv_production_dashboard_line
    ON factory_telemetry.mv_production_dashboard (line_id);
CREATE INDEX IF NOT EXISTS idx_mv_production_dashboard_status
    ON factory_telemetry.mv_production_dashboard (schedule_status, job_status);
CREATE INDEX IF NOT EXISTS idx_mv_downtime_summary_line
    ON factory_telemetry.mv_downtime_summary (line_id, category);
CREATE INDEX IF NOT EXISTS idx_mv_oee_summary_line_date
    ON factory_telemetry.mv_oee_summary (line_id, calculation_date DESC);

-- Functions
-- CREATE OR REPLACE FUNCTION cannot rename parameters, remove defaults or
-- change the result type. If an existing function with one of these signatures
-- differs in those respects, it is dropped here and recreated below.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT * FROM (VALUES
            ('factory_telemetry.get_line_performance_summary(uuid,integer)',
             'p_line_id uuid, p_hours integer DEFAULT 24',
             'TABLE(line_id uuid, avg_oee real, total_production integer, total_downtime_minutes integer, availability real, performance real, quality real)'),
            ('factory_telemetry.get_equipment_downtime_summary(text,integer)',
             'p_equipment_code text, p_days integer DEFAULT 7',
             'TABLE(equipment_code text, total_downtime_minutes integer, planned_downtime_minutes integer, unplanned_downtime_minutes integer, avg_downtime_duration_minutes real, downtime_events_count integer)'),
            ('factory_telemetry.get_production_efficiency_metrics(uuid,integer)',
             'p_line_id uuid, p_days integer DEFAULT 7',
             'TABLE(line_id uuid, total_scheduled_hours real, actual_production_hours real, efficiency_percentage real, target_vs_actual_percentage real)')
        ) AS v(sig, args, result)
    LOOP
        IF to_regprocedure(f.sig) IS NOT NULL
           AND (pg_get_function_arguments(to_regprocedure(f.sig)) <> f.args
                OR pg_get_function_result(to_regprocedure(f.sig)) <> f.result) THEN
            EXECUTE 'DROP FUNCTION ' || f.sig;
            RAISE NOTICE 'dropped % (different parameters or result), recreating it', f.sig;
        END IF;
    END LOOP;
END
$$;

-- OEE averages and production / downtime totals of one line over the last p_hours hours.
CREATE OR REPLACE FUNCTION factory_telemetry.get_line_performance_summary(
    p_line_id uuid,
    p_hours integer DEFAULT 24
)
RETURNS TABLE(line_id uuid, avg_oee real, total_production integer, total_downtime_minutes integer,
              availability real, performance real, quality real)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    WITH oee AS (
        SELECT avg(oc.oee) AS avg_oee,
               avg(oc.availability) AS availability,
               avg(oc.performance) AS performance,
               avg(oc.quality) AS quality
        FROM factory_telemetry.oee_calculations oc
        WHERE oc.line_id = p_line_id
          AND oc.calculation_time > now() - make_interval(hours => p_hours)
    ), kpi AS (
        SELECT sum(pk.total_production) AS total_production,
               sum(pk.total_downtime_minutes) AS total_downtime_minutes
        FROM factory_telemetry.production_kpis pk
        WHERE pk.line_id = p_line_id
          AND pk.kpi_date >= (now() - make_interval(hours => p_hours))::date
    )
    SELECT p_line_id,
           oee.avg_oee::real,
           COALESCE(kpi.total_production, 0)::integer,
           COALESCE(kpi.total_downtime_minutes, 0)::integer,
           oee.availability::real,
           oee.performance::real,
           oee.quality::real
    FROM oee CROSS JOIN kpi;
END;
$$;

-- Downtime totals of one piece of equipment over the last p_days days.
CREATE OR REPLACE FUNCTION factory_telemetry.get_equipment_downtime_summary(
    p_equipment_code text,
    p_days integer DEFAULT 7
)
RETURNS TABLE(equipment_code text, total_downtime_minutes integer, planned_downtime_minutes integer,
              unplanned_downtime_minutes integer, avg_downtime_duration_minutes real,
              downtime_events_count integer)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT p_equipment_code,
           COALESCE(sum(d.duration_seconds), 0)::integer / 60,
           COALESCE(sum(d.duration_seconds) FILTER (WHERE d.category = 'planned'), 0)::integer / 60,
           COALESCE(sum(d.duration_seconds) FILTER (WHERE d.category = 'unplanned'), 0)::integer / 60,
           (avg(d.duration_seconds) / 60.0)::real,
           count(*)::integer
    FROM factory_telemetry.downtime_events d
    WHERE d.equipment_code = p_equipment_code
      AND d.start_time > now() - make_interval(days => p_days);
END;
$$;

-- Scheduled versus actual production hours and speed efficiency of one line
-- over the last p_days days (from oee_calculations and the line's target speed).
CREATE OR REPLACE FUNCTION factory_telemetry.get_production_efficiency_metrics(
    p_line_id uuid,
    p_days integer DEFAULT 7
)
RETURNS TABLE(line_id uuid, total_scheduled_hours real, actual_production_hours real,
              efficiency_percentage real, target_vs_actual_percentage real)
LANGUAGE plpgsql
AS $$
DECLARE
    v_target_speed real;
BEGIN
    SELECT pl.target_speed INTO v_target_speed
    FROM factory_telemetry.production_lines pl
    WHERE pl.id = p_line_id;

    RETURN QUERY
    SELECT p_line_id,
           (p_days * 24)::real,
           (COALESCE(sum(oc.actual_production_time), 0) / 3600.0)::real,
           CASE WHEN v_target_speed > 0 THEN (COALESCE(avg(oc.performance), 0) * 100)::real ELSE 0::real END,
           CASE WHEN v_target_speed > 0 THEN (COALESCE(avg(oc.performance), 0) * 100)::real ELSE 0::real END
    FROM factory_telemetry.oee_calculations oc
    WHERE oc.line_id = p_line_id
      AND oc.calculation_time > now() - make_interval(days => p_days);
END;
$$;

-- Recomputes the three dashboard materialized views.
CREATE OR REPLACE FUNCTION factory_telemetry.refresh_materialized_views()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW factory_telemetry.mv_production_dashboard;
    REFRESH MATERIALIZED VIEW factory_telemetry.mv_downtime_summary;
    REFRESH MATERIALIZED VIEW factory_telemetry.mv_oee_summary;
    RAISE NOTICE 'Materialized views refreshed';
END;
$$;

-- Updates planner statistics of the main production tables.
CREATE OR REPLACE FUNCTION factory_telemetry.update_table_statistics()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    ANALYZE factory_telemetry.production_lines;
    ANALYZE factory_telemetry.production_schedules;
    ANALYZE factory_telemetry.job_assignments;
    ANALYZE factory_telemetry.oee_calculations;
    ANALYZE factory_telemetry.downtime_events;
    ANALYZE factory_telemetry.andon_events;
    ANALYZE factory_telemetry.energy_consumption;
    ANALYZE factory_telemetry.quality_checks;
    ANALYZE factory_telemetry.production_reports;
    ANALYZE factory_telemetry.production_kpis;
    ANALYZE factory_telemetry.equipment_config;
    ANALYZE factory_telemetry.context;
    ANALYZE factory_telemetry.metric_hist;
    ANALYZE factory_telemetry.metric_latest;
    RAISE NOTICE 'Table statistics updated';
END;
$$;

-- Table maintenance that can run inside a function: statistics and the
-- dashboard materialized views, logged in maintenance_log. VACUUM cannot run
-- inside a function or transaction; it is left to autovacuum (or a scheduled
-- vacuumdb).
CREATE OR REPLACE FUNCTION factory_telemetry.maintain_tables()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_started timestamp with time zone := clock_timestamp();
BEGIN
    PERFORM factory_telemetry.update_table_statistics();
    PERFORM factory_telemetry.refresh_materialized_views();
    INSERT INTO factory_telemetry.maintenance_log (maintenance_type, started_at, completed_at, status, notes)
    VALUES ('maintain_tables', v_started, clock_timestamp(), 'completed',
            'ANALYZE and materialized view refresh; VACUUM is left to autovacuum');
    RAISE NOTICE 'Table maintenance completed';
END;
$$;

-- Reports the connection and memory settings recommended for MS5.0 next to the
-- current ones. It changes nothing: ALTER SYSTEM cannot run inside a function,
-- and these settings belong in the server configuration (postgresql.conf or the
-- container command line).
CREATE OR REPLACE FUNCTION factory_telemetry.configure_connection_pooling()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    s record;
BEGIN
    FOR s IN
        SELECT v.name, v.recommended, current_setting(v.name) AS current
        FROM (VALUES ('max_connections', '200'),
                     ('shared_buffers', '256MB'),
                     ('effective_cache_size', '1GB'),
                     ('maintenance_work_mem', '64MB'),
                     ('checkpoint_completion_target', '0.9'),
                     ('wal_buffers', '16MB'),
                     ('default_statistics_target', '100')) AS v(name, recommended)
    LOOP
        RAISE NOTICE '%: recommended %, current %', s.name, s.recommended, s.current;
    END LOOP;
END;
$$;

-- Daily maintenance: statistics, materialized views, and a maintenance_log entry.
CREATE OR REPLACE FUNCTION factory_telemetry.daily_maintenance()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_started timestamp with time zone := clock_timestamp();
BEGIN
    PERFORM factory_telemetry.update_table_statistics();
    PERFORM factory_telemetry.refresh_materialized_views();
    INSERT INTO factory_telemetry.maintenance_log (maintenance_type, started_at, completed_at, status, notes)
    VALUES ('daily_maintenance', v_started, clock_timestamp(), 'completed',
            'Daily maintenance completed');
    RAISE NOTICE 'Daily maintenance completed';
END;
$$;

-- Privileges again, for the tables, sequences, views and materialized views
-- created after 002 (same statements as in 002).
-- Privileges of the application roles: USAGE on the schema, read/write on its
-- tables (GRANT ... ON ALL TABLES also covers its views and materialized
-- views), USAGE/SELECT on its sequences, SELECT on the application's views in
-- public that exist at this point.
GRANT USAGE ON SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA factory_telemetry TO ms5_user_production, ms5_user_staging;

DO $$
DECLARE
    v text;
BEGIN
    FOREACH v IN ARRAY ARRAY[
        'v_equipment_latest', 'v_faults_active', 'v_production_dashboard',
        'v_downtime_summary', 'v_oee_summary', 'v_production_performance',
        'v_maintenance_overview', 'v_andon_escalation_statistics',
        'v_equipment_production_status', 'v_production_line_equipment',
        'v_production_line_status']
    LOOP
        IF to_regclass('public.' || quote_ident(v)) IS NOT NULL THEN
            EXECUTE 'GRANT SELECT ON public.' || quote_ident(v)
                 || ' TO ms5_user_production, ms5_user_staging';
        END IF;
    END LOOP;
END
$$;
